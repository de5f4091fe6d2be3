import { describe, expect, it, onTestFinished, vi } from "vitest";
import { Queue } from "bullmq";
import { createRedis } from "@agentry/core";
import { AuditLog } from "@agentry/governance";
import { AgentryClient } from "@agentry/runtime";
import { startRedisServer } from "@agentry/testkit";
import { startWorkerProcess, waitStarted } from "./worker-processes.js";

// AGENTRY_REDIS_WAIT_REPLICAS: a tool runs only once a replica holds its claim. Against a master
// without a replica the worker says so at start, and a task's tool call is retried, not run,
// until a replica is there, for longer than its attempts would last: waiting for Redis uses none
// of them. Then the task completes with its tool run once.
describe("a worker with AGENTRY_REDIS_WAIT_REPLICAS", () => {
  it("warns of a master short of replicas, runs no tool until one holds the claim (more tries than the task has attempts), then completes the task", async () => {
    const master = await startRedisServer();
    onTestFinished(() => master.stop());
    const prefix = "{agentry-wr}";
    const w = startWorkerProcess("wait-replicas", {
      REDIS_URL: master.url,
      AGENTRY_PREFIX: prefix,
      AGENTRY_LLM: "scripted",
      AGENTRY_REDIS_WAIT_REPLICAS: "1",
      AGENTRY_REDIS_WAIT_TIMEOUT_MS: "200",
      AGENTRY_REDIS_RETRY_MAX_MS: "300",
    });
    onTestFinished(() => w.kill());
    await waitStarted(w);
    const warning = w
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { event?: string; node?: string; replicas?: number; wanted?: number })
      .find((l) => l.event === "redis-replicas-short");
    expect(warning).toMatchObject({ node: `127.0.0.1:${master.port}`, replicas: 0, wanted: 1 });

    const client = new AgentryClient({ url: master.url, prefix });
    onTestFinished(() => client.close());
    const { taskId } = await client.submit({ prompt: "What is the weather in Paris?" }, { tenant: "acme" });
    // Each try reaches the tool call and stops there; the task waits for Redis and tries again,
    // more often than its 5 attempts would have allowed.
    const waits = () => w.output().split('"event":"task-waits-for-redis"').length - 1;
    await vi.waitFor(() => expect(waits()).toBeGreaterThanOrEqual(7), { timeout: 120_000, interval: 100 });
    expect(w.output()).toContain("is not replicated");
    // Its status says why it waits.
    await vi.waitFor(
      async () =>
        expect((await client.status(taskId)).progress).toMatchObject({
          phase: "parked",
          reason: "redis_unavailable",
        }),
      { timeout: 60_000, interval: 20 },
    );
    expect(w.output()).not.toContain('"event":"task-retry"');
    const redis = createRedis({ url: master.url, role: "command" });
    onTestFinished(() => redis.disconnect());
    const audit = new AuditLog({ redis, prefix });
    const actions = async () => (await audit.read({ count: 10_000 })).filter((e) => e.type === "action");
    expect(await actions()).toEqual([]);

    const replica = await startRedisServer({ args: ["--replicaof", "127.0.0.1", String(master.port)] });
    onTestFinished(() => replica.stop());
    const result = await client.wait(taskId, { timeoutMs: 120_000 });
    expect(result.text).toContain("Paris");
    expect((await actions()).map((e) => e.taskId)).toEqual([taskId]);
    expect(w.output()).not.toContain('"event":"task-failed"');
    // No attempt was used up: every stop was a wait for Redis. BullMQ counts the attempt that
    // completed the job, and every start.
    expect(await client.status(taskId)).toMatchObject({ state: "completed" });
    const queue = new Queue("tasks", { connection: redis, prefix });
    onTestFinished(() => queue.close());
    const job = await queue.getJob(taskId);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.attemptsStarted).toBeGreaterThanOrEqual(8);
  }, 180_000);
});
