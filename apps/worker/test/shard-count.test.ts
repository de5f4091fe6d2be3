import { describe, expect, it } from "vitest";
import { AgentryError, pinShardCount, shardCountKey } from "@agentry/core";
import { AgentryClient } from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { runMain, startWorkerProcess, waitStarted } from "./worker-processes.js";

// Every process of a deployment must split the queue the same way. A producer on 3 shards and
// workers on 2 would leave shard 2's tasks with no consumer; a count changed without a drain
// would leave sessions' order, history and budgets on the shards they hashed to before. The
// first process records the count; a process on another one stops at start with one line.
const redis = useTestRedis("shard-count");

describe("a deployment's shard count", () => {
  it("stops a worker or producer on another count at start, with one line saying what to set", async () => {
    const prefix = redis.freshPrefix();
    const env = { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix, AGENTRY_SHARDS: "2" };
    await pinShardCount(redis.client(), prefix, 3);
    const [worker, producer] = await Promise.all([runMain("worker", env), runMain("producer", env)]);
    for (const { code, out } of [worker, producer]) {
      expect(code, out).toBe(2);
      const refusals = out.split("\n").filter((l) => l.includes("AGENTRY_SHARDS=2, but the deployment"));
      expect(refusals.length, out).toBeGreaterThan(0);
      expect(refusals.at(-1)).toContain("set AGENTRY_SHARDS=3 on every process");
    }
    // No task or lock was written; at most BullMQ's queue meta, which its Queue writes at once.
    const written = await redis.client().keys(`${prefix}*`);
    expect(written.filter((k) => !k.endsWith(":tasks:meta"))).toEqual([shardCountKey(prefix)]);

    // The deployment's own count starts.
    const w = startWorkerProcess("right-count", { ...env, AGENTRY_SHARDS: "3", AGENTRY_LLM: "scripted" });
    await waitStarted(w);
    expect(await w.stop()).toBe(0);
  }, 180_000);

  it("refuses a client's submit on another count, and records the count of the first that submits", async () => {
    const prefix = redis.freshPrefix();
    const client = (shards: number) => new AgentryClient({ url: redis.url, prefix, shards });
    const first = client(3);
    const { taskId } = await first.submit({ prompt: "hello" }, { tenant: "acme" });
    expect(await redis.client().get(shardCountKey(prefix))).toBe("3");
    expect((await first.status(taskId)).state).toBe("queued");

    const other = client(2);
    const err: unknown = await other.submit({ prompt: "hello" }, { tenant: "acme" }).catch((e: unknown) => e);
    expect(AgentryError.isInstance(err) && err.code).toBe("INVALID_CONFIG");
    const groupErr: unknown = await other
      .submitGroup([{ prompt: "a" }], { tenant: "acme" })
      .catch((e: unknown) => e);
    expect(AgentryError.isInstance(groupErr) && groupErr.code).toBe("INVALID_CONFIG");
    // Only the first client's task was enqueued.
    const jobs = (await redis.client().keys(`${prefix}*:tasks:*`)).filter((k) =>
      /:tasks:(task|group)_[0-9a-f]+$/.test(k),
    );
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.endsWith(`:tasks:${taskId}`)).toBe(true);
    await Promise.all([first.close(), other.close()]);
  });
});
