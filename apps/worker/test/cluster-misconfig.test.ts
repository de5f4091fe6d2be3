import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { createLogger } from "@agentry/core";
import { AgentWorker } from "@agentry/runtime";
import { useRedisCluster } from "@agentry/testkit";
import { runMain } from "./worker-processes.js";

// A deployment pointed at a Redis Cluster with a prefix that does not fit it: the processes stop
// at start with one line saying what to set, and a loop that fails on every turn anyway is
// logged with backoff, not once per failure.
const cluster = useRedisCluster({ nodes: 3 });

describe("a prefix that does not fit the Redis Cluster", () => {
  it.each(["worker", "producer"] as const)(
    "stops the %s at start with one line when the prefix has no hash tag",
    async (app) => {
      const { code, out } = await runMain(app, { REDIS_URL: cluster().url, AGENTRY_PREFIX: "agentry" });
      expect(code).toBe(2);
      const lines = out.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/AGENTRY_PREFIX "agentry" has no hash tag.*set AGENTRY_PREFIX=\{agentry\}/);
    },
    90_000,
  );

  it.each(["worker", "producer"] as const)(
    "stops the %s at start when REDIS_URL names a cluster node as a single server",
    async (app) => {
      const { code, out } = await runMain(app, {
        REDIS_URL: `redis://127.0.0.1:${cluster().ports[0]}`,
        AGENTRY_PREFIX: "{agentry}",
      });
      expect(code).toBe(2);
      const refusals = out.split("\n").filter((l) => l.includes("REDIS_URL points at a Redis Cluster node"));
      expect(refusals.length).toBeGreaterThan(0);
      expect(refusals.at(-1)).toContain("set REDIS_URL=redis+cluster://");
      // No CROSSSLOT or MOVED storm before the refusal.
      expect(out.split("\n").length).toBeLessThan(6);
    },
    90_000,
  );

  it.each(["worker", "producer"] as const)(
    "stops the %s at start when one master evicts keys, naming that master",
    async (app) => {
      const port = cluster().ports[1] as number;
      const node = new Redis({ host: "127.0.0.1", port });
      try {
        await node.config("SET", "maxmemory-policy", "allkeys-lru");
        const { code, out } = await runMain(app, { REDIS_URL: cluster().url, AGENTRY_PREFIX: "{agentry}" });
        expect(code).toBe(2);
        const refusal = out.split("\n").find((l) => l.includes("evicts keys"));
        expect(refusal).toMatch(
          new RegExp(
            `Redis at 127\\.0\\.0\\.1:${port} evicts keys \\(maxmemory-policy allkeys-lru\\): .*set maxmemory-policy noeviction`,
          ),
        );
        // The other masters are not named.
        for (const other of cluster().ports.filter((p) => p !== port))
          expect(refusal).not.toContain(`:${other} `);
      } finally {
        await node.config("SET", "maxmemory-policy", "noeviction");
        node.disconnect();
      }
    },
    90_000,
  );

  it("logs a Redis error that repeats on every poll with backoff, not once per failure", async () => {
    const lines: { msg: string; err?: string; repeats?: number }[] = [];
    const logger = createLogger({
      name: "misconfigured",
      destination: new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split("\n").filter(Boolean))
            lines.push(JSON.parse(line) as (typeof lines)[number]);
          done();
        },
      }),
    });
    // Past the configuration checks on purpose: an untagged prefix on a cluster makes BullMQ's
    // loop fail with CROSSSLOT on every turn.
    const worker = new AgentWorker({
      url: cluster().url,
      prefix: "untagged",
      handler: () => Promise.reject(new Error("never runs")),
      logger,
    });
    void worker.start().catch(() => undefined);
    const crossslot = () => lines.filter((l) => l.err?.includes("CROSSSLOT"));
    try {
      await expect
        .poll(() => crossslot().reduce((n, l) => n + (l.repeats ?? 0), 0), { timeout: 60_000, interval: 200 })
        .toBeGreaterThan(100);
      // Hundreds of failures, a handful of lines: the first at once, then counts.
      const logged = crossslot();
      const repeats = logged.reduce((n, l) => n + (l.repeats ?? 0), 0);
      expect(logged[0]?.repeats).toBeUndefined();
      expect(logged.length).toBeLessThan(10);
      expect(repeats).toBeGreaterThan(logged.length * 10);
    } finally {
      await Promise.race([worker.close(), new Promise((r) => setTimeout(r, 5_000))]);
    }
  }, 90_000);
});
