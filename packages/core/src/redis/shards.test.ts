import { describe, expect, it } from "vitest";
import pino from "pino";
import { Writable } from "node:stream";
import {
  CLUSTER_SLOTS,
  RepeatedErrors,
  clusterSlot,
  hashTagOf,
  parseEnv,
  parseShardList,
  shardOfSession,
  shardPrefix,
  shardPrefixes,
  splitConcurrency,
} from "../index.js";

describe("queue shards", () => {
  it("hashes keys to the slots Redis Cluster uses", () => {
    // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
    expect(clusterSlot("foo")).toBe(12182);
    expect(clusterSlot("somekey")).toBe(11058);
    expect(clusterSlot("{user1000}.following")).toBe(clusterSlot("user1000"));
    expect(clusterSlot("foo{}{bar}")).toBe(clusterSlot("foo{}{bar}"));
    expect(hashTagOf("foo{}{bar}")).toBeUndefined();
    expect(hashTagOf("{agentry}:tasks")).toBe("agentry");
  });

  it("keeps the base prefix for one shard, and gives N shards tags in N evenly spaced slot ranges", () => {
    expect(shardPrefix("{agentry}", 0, 1)).toBe("{agentry}");
    expect(shardPrefix("agentry", 0, 1)).toBe("agentry");
    for (const n of [2, 3, 5, 16]) {
      const prefixes = shardPrefixes("{agentry}", n);
      expect(new Set(prefixes).size).toBe(n);
      prefixes.forEach((p, i) => {
        const slot = clusterSlot(`${p}:tasks:wait`);
        expect(slot).toBeGreaterThanOrEqual((i * CLUSTER_SLOTS) / n);
        expect(slot).toBeLessThan(((i + 1) * CLUSTER_SLOTS) / n);
        expect(p).not.toBe("{agentry}");
      });
    }
    expect(shardPrefixes("pre{t}post", 2).every((p) => p.startsWith("pre{t-s") && p.endsWith("}post"))).toBe(
      true,
    );
    expect(shardPrefixes("agentry", 3)).toEqual(["agentry:s0", "agentry:s1", "agentry:s2"]);
  });

  it("routes a session to one shard, spreading sessions over all of them", () => {
    const counts = [0, 0, 0];
    for (let i = 0; i < 3_000; i++) {
      const s = shardOfSession("acme", `session-${i}`, 3);
      expect(shardOfSession("acme", `session-${i}`, 3)).toBe(s);
      counts[s] = (counts[s] ?? 0) + 1;
    }
    for (const c of counts) expect(c).toBeGreaterThan(800);
    expect(shardOfSession("acme", "x", 1)).toBe(0);
  });

  it("parses a worker's shard list against the shard count, naming the variable", () => {
    expect(parseShardList(undefined, 3)).toEqual([0, 1, 2]);
    expect(parseShardList(" ", 3)).toEqual([0, 1, 2]);
    expect(parseShardList("2, 0", 3)).toEqual([0, 2]);
    for (const bad of ["5", "a", "1,1", "-1", "1.5"])
      expect(() => parseShardList(bad, 3)).toThrowError(/AGENTRY_WORKER_SHARDS/);
  });

  it("splits a process's concurrency over its shards: the remainder to the first, at least one each", () => {
    expect(splitConcurrency(4, 1)).toEqual([4]);
    expect(splitConcurrency(8, 3)).toEqual([3, 3, 2]);
    expect(splitConcurrency(2, 3)).toEqual([1, 1, 1]);
  });

  it("reads AGENTRY_SHARDS, and refuses an untagged prefix on a cluster URL with one line", () => {
    expect(parseEnv({}).AGENTRY_SHARDS).toBe(1);
    expect(parseEnv({ AGENTRY_SHARDS: "3" }).AGENTRY_SHARDS).toBe(3);
    for (const bad of ["0", "x", "1000"])
      expect(() => parseEnv({ AGENTRY_SHARDS: bad })).toThrowError(/AGENTRY_SHARDS/);
    expect(() =>
      parseEnv({ REDIS_URL: "redis+cluster://127.0.0.1:7000", AGENTRY_PREFIX: "agentry" }),
    ).toThrowError(/set AGENTRY_PREFIX=\{agentry\}/);
    expect(
      parseEnv({ REDIS_URL: "redis+cluster://127.0.0.1:7000", AGENTRY_PREFIX: "{a}" }).AGENTRY_PREFIX,
    ).toBe("{a}");
  });
});

describe("RepeatedErrors", () => {
  it("logs an error that repeats once, then counts with a doubling pause", () => {
    const lines: { msg: string; repeats?: number }[] = [];
    const logger = pino(
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(JSON.parse(chunk.toString()) as { msg: string; repeats?: number });
          done();
        },
      }),
    );
    let now = 0;
    const errors = new RepeatedErrors(logger, { firstPauseMs: 1_000, maxPauseMs: 8_000, now: () => now });
    // A hot loop: one failure every millisecond for a minute.
    for (now = 0; now < 60_000; now++) errors.warn("worker error", new Error("CROSSSLOT"));
    expect(lines.length).toBeLessThan(12);
    expect(lines[0]?.repeats).toBeUndefined();
    const counted = lines.slice(1).reduce((sum, l) => sum + (l.repeats ?? 0), 0);
    expect(counted).toBeGreaterThan(50_000);
    // Another error is its own.
    errors.warn("worker error", new Error("other"));
    expect(lines.at(-1)?.repeats).toBeUndefined();
  });
});
