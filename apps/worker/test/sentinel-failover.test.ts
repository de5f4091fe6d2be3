import { describe, expect, it, onTestFinished } from "vitest";
import { Redis } from "ioredis";
import { createRedis, readEvictionStates, readReplicaCounts } from "@agentry/core";
import { useRedisSentinel } from "@agentry/testkit";
import { tasksThroughFailover } from "./failover-harness.js";
import { ask, failedOver } from "./sentinel-control.js";

// A Redis master watched by Sentinels (REDIS_URL=redis+sentinel://...) dies and the Sentinels
// promote a replica: clients follow it. Three replicas, so that each of the two failovers below
// leaves the new master a replica to acknowledge tool claims (AGENTRY_REDIS_WAIT_REPLICAS=1).
const sentinel = useRedisSentinel({ replicas: 3 });

/** Kills the master, resolving once the failover has settled. */
async function killMaster(): Promise<number> {
  const port = await sentinel().master();
  await ask(port, (conn) => conn.shutdown("NOSAVE")).catch(() => undefined);
  await failedOver(sentinel(), port);
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
