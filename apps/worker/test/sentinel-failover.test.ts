import { describe, expect, it, onTestFinished, vi } from "vitest";
import { Redis } from "ioredis";
import { createRedis, readEvictionStates, readReplicaCounts } from "@agentry/core";
import { useRedisSentinel } from "@agentry/testkit";
import { tasksThroughFailover } from "./failover-harness.js";

// A Redis master watched by Sentinels (REDIS_URL=redis+sentinel://...) dies and the Sentinels
// promote a replica: clients follow it. Three replicas, so that each of the two failovers below
// leaves the new master a replica to acknowledge tool claims (AGENTRY_REDIS_WAIT_REPLICAS=1).
const sentinel = useRedisSentinel({ replicas: 3 });

/** Asks one server or Sentinel something on a short-lived connection. */
async function ask<T>(port: number, question: (conn: Redis) => Promise<T>): Promise<T> {
  const conn = new Redis({ host: "127.0.0.1", port, retryStrategy: () => null, maxRetriesPerRequest: 1 });
  conn.on("error", () => undefined);
  try {
    return await question(conn);
  } finally {
    conn.disconnect();
  }
}

/**
 * Kills the master and resolves once the failover has settled: every Sentinel names the same new
 * master, and each replica left follows it with its link up (a replica is resynced from the new
 * master meanwhile, and a Sentinel late to the news could start a failover of its own).
 */
async function killMaster(): Promise<number> {
  const port = await sentinel().master();
  await ask(port, (conn) => conn.shutdown("NOSAVE")).catch(() => undefined);
  await vi.waitFor(
    async () => {
      const named = await Promise.all(
        sentinel().sentinels.map((s) =>
          ask(
            s,
            (conn) => conn.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel().name) as Promise<string[]>,
          ),
        ),
      );
      const masters = new Set(named.map((addr) => Number(addr[1])));
      expect(masters.size).toBe(1);
      const [master] = [...masters] as [number];
      expect(master).not.toBe(port);
      expect(await ask(master, (conn) => conn.info("replication"))).toMatch(/^role:master/m);
      const replicas = sentinel().nodes.filter((n) => n !== master && n !== port);
      for (const replica of replicas) {
        const info = await ask(replica, (conn) => conn.info("replication")).catch(() => "");
        if (info === "") continue; // killed by an earlier test
        expect(info).toMatch(new RegExp(`^master_port:${master}\\s*$`, "m"));
        expect(info).toMatch(/^master_link_status:up/m);
      }
    },
    { timeout: 60_000, interval: 200 },
  );
  return port;
}

describe("REDIS_URL=redis+sentinel://", () => {
  it("a client reaches the master, reads its replicas, and follows a failover to the promoted replica", async () => {
    const redis = createRedis({ url: sentinel().url, role: "worker" });
    redis.on("error", () => undefined);
    onTestFinished(() => redis.disconnect());
    const first = await sentinel().master();
    await redis.set("{sentinel}:k", "before");
    const node = `127.0.0.1:${first} (master agentry)`;
    expect((await readEvictionStates(redis))[0]?.node).toBe(node);
    expect(await readReplicaCounts(redis)).toEqual([{ node, replicas: 3 }]);

    await killMaster();
    // The same client writes on, to the new master (a worker connection queues meanwhile).
    await redis.set("{sentinel}:k", "after");
    const direct = new Redis({ host: "127.0.0.1", port: await sentinel().master() });
    onTestFinished(() => direct.disconnect());
    expect(await direct.get("{sentinel}:k")).toBe("after");
  }, 120_000);

  it("workers run tasks through the master's death: every task completes, none fails, each tool runs once, the audit chain verifies", async () => {
    await tasksThroughFailover({
      url: sentinel().url,
      prefix: "{agentry-sentinel}",
      env: { AGENTRY_REDIS_WAIT_REPLICAS: "1" },
      // Submits too: one the dead master took is on a replica before submit returns.
      client: { waitReplicas: { replicas: 1 } },
      failOver: async () => void (await killMaster()),
    });
  }, 300_000);
});
