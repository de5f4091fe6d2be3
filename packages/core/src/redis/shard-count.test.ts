import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it, inject } from "vitest";
import { AgentryError, pinShardCount, shardCountKey } from "../index.js";

const redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
afterAll(() => redis.quit());
const freshBase = () => `test-shard-count-${randomBytes(5).toString("hex")}`;

async function refusal(p: Promise<unknown>): Promise<AgentryError> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(AgentryError.isInstance(err)).toBe(true);
  return err as AgentryError;
}

describe("pinShardCount", () => {
  it("records the first process's count; every later one must match it, whatever it is", async () => {
    const base = freshBase();
    await pinShardCount(redis, base, 3);
    expect(await redis.get(shardCountKey(base))).toBe("3");
    await pinShardCount(redis, base, 3);
    await pinShardCount(redis, base, 3, { write: false });
    const err = await refusal(pinShardCount(redis, base, 2));
    expect(err.code).toBe("INVALID_CONFIG");
    // One line saying what to set, and how to change the count on purpose.
    expect(err.message).toBe(
      `AGENTRY_SHARDS=2, but the deployment on AGENTRY_PREFIX=${base} runs 3 shard(s) (${base}:tasks:shards): set AGENTRY_SHARDS=3 on every process; to change the count, drain every queue, stop every process, then SET ${base}:tasks:shards 2`,
    );
    await refusal(pinShardCount(redis, base, 1, { write: false }));
    // Changed on purpose, as the message says: the new count holds.
    await redis.set(shardCountKey(base), "2");
    await pinShardCount(redis, base, 2);
    await refusal(pinShardCount(redis, base, 3));
  });

  it("racing first starts on different counts: one count wins, the other is refused", async () => {
    const base = freshBase();
    const counts = [4, 5, 4, 5, 4, 5];
    const conns = counts.map(() => redis.duplicate());
    const outcomes = await Promise.allSettled(
      counts.map((n, i) => pinShardCount(conns[i] as Redis, base, n)),
    );
    await Promise.all(conns.map((c) => c.quit()));
    const recorded = await redis.get(shardCountKey(base));
    expect(["4", "5"]).toContain(recorded);
    outcomes.forEach((o, i) =>
      expect(o.status).toBe(String([4, 5, 4, 5, 4, 5][i]) === recorded ? "fulfilled" : "rejected"),
    );
  });

  it("a deployment from before the record, its one queue on the base prefix, counts as 1 shard", async () => {
    const base = freshBase();
    // BullMQ's meta hash of the single queue, as every started queue has.
    await redis.hset(`${base}:tasks:meta`, "opts.maxLenEvents", "10000");
    expect((await refusal(pinShardCount(redis, base, 3))).message).toContain("runs 1 shard(s)");
    expect(await redis.get(shardCountKey(base))).toBeNull();
    await pinShardCount(redis, base, 1);
    expect(await redis.get(shardCountKey(base))).toBe("1");
  });

  it("a read-only caller records nothing", async () => {
    const base = freshBase();
    await pinShardCount(redis, base, 3, { write: false });
    expect(await redis.exists(shardCountKey(base))).toBe(0);
  });
});
