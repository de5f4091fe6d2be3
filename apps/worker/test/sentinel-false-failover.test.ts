import { expect, it, vi } from "vitest";
import { useRedisSentinel } from "@agentry/testkit";
import { tasksThroughFailover } from "./failover-harness.js";
import { ask, failedOver } from "./sentinel-control.js";

// A false failover: the master stalls (SIGSTOP: a long fork, swap, or a network partition) for
// longer than the Sentinels wait, they promote a replica, and the master comes back still a
// master until they turn it into a replica of the new one, dropping what it took meanwhile. With
// AGENTRY_REDIS_WAIT_REPLICAS equal to the replicas it has, no write that was acknowledged is
// among those: once a replica is promoted the old master has one replica fewer, so its WAIT
// falls short, and the writer is told to try again (on the new master, once it follows it).
const sentinel = useRedisSentinel({ replicas: 2 });

/**
 * Stalls the master until a Sentinel has picked the replica to promote, then lets it go on, still
 * a master: the other replica follows it a little longer, until the Sentinels reconfigure both.
 */
async function stallMaster(): Promise<void> {
  const port = await sentinel().master();
  const info = await ask(port, (conn) => conn.info("server"));
  const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
  expect(pid).toBeGreaterThan(0);
  process.kill(pid, "SIGSTOP");
  try {
    await vi.waitFor(
      async () => {
        const picked = await Promise.all(
          sentinel().sentinels.map((s) =>
            ask(s, async (conn) => {
              const replicas = (await conn.call("SENTINEL", "REPLICAS", sentinel().name)) as string[][];
              return replicas.some((fields) =>
                (fields[fields.indexOf("flags") + 1] ?? "").includes("promoted"),
              );
            }).catch(() => false),
          ),
        );
        expect(picked).toContain(true);
      },
      { timeout: 90_000, interval: 20 },
    );
  } finally {
    process.kill(pid, "SIGCONT");
  }
  await failedOver(sentinel(), port);
}

it("a master failed over while alive loses no acknowledged write with AGENTRY_REDIS_WAIT_REPLICAS = its replicas: every task completes, none fails, each tool runs once, the audit chain verifies", async () => {
  await tasksThroughFailover({
    url: sentinel().url,
    prefix: "{agentry-stall}",
    env: { AGENTRY_REDIS_WAIT_REPLICAS: "2" },
    client: { waitReplicas: { replicas: 2 } },
    failOver: stallMaster,
  });
}, 300_000);
