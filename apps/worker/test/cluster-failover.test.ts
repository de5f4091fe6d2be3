import { describe, expect, it, onTestFinished, vi } from "vitest";
import { Redis } from "ioredis";
import { createRedis } from "@agentry/core";
import { RedisToolJournal } from "@agentry/runtime";
import { useRedisCluster } from "@agentry/testkit";
import { tasksThroughFailover } from "./failover-harness.js";

// The master of the deployment's slot is replaced by its replica while workers run tasks: by an
// operator (planned maintenance: CLUSTER FAILOVER, which waits for the replica to catch up), or
// by the cluster itself when the master dies. The workers follow the slot to its new master:
// every task completes, none fails, each task's tool runs once, and the audit chain written
// across the failover verifies.
const cluster = useRedisCluster({ nodes: 6, replicas: 1 });

/** `ROLE`: "master", or "slave" and whether its link to the master is up ("connected"). */
async function roleOf(port: number): Promise<string> {
  const conn = new Redis({ host: "127.0.0.1", port });
  try {
    const role = (await conn.call("ROLE")) as unknown[];
    return role[0] === "slave" ? `slave ${String(role[3])}` : String(role[0]);
  } finally {
    conn.disconnect();
  }
}

/**
 * Replaces the master of the deployment's slot by its replica with `failOver`, while tasks run
 * (see tasksThroughFailover), once that replica has caught up (a manual failover needs it).
 */
async function tasksThroughSlotFailover(
  prefix: string,
  failOver: (nodes: { master: number; replica: number }) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const slot = await cluster().slotNodes(`${prefix}:tasks:wait`);
  if (slot.replicas[0] === undefined) throw new Error("the slot's master has no replica");
  const nodes = { master: slot.master, replica: slot.replicas[0] };
  await vi.waitFor(async () => expect(await roleOf(nodes.replica)).toBe("slave connected"), {
    timeout: 60_000,
    interval: 200,
  });
  await tasksThroughFailover({
    url: cluster().url,
    prefix,
    env,
    failOver: async () => {
      await failOver(nodes);
      await vi.waitFor(async () => expect(await roleOf(nodes.replica)).toBe("master"), {
        timeout: 60_000,
        interval: 200,
      });
    },
  });
}

describe("a tool call's claim on a Redis Cluster with waitReplicas", () => {
  it("waits for the replica of the claim's own slot: a stalled replica there stops the call, the others' do not let it through", async () => {
    const prefix = "{agentry-wait}";
    const redis = createRedis({ url: cluster().url, role: "worker" });
    onTestFinished(() => redis.disconnect());
    const run = { taskId: "t1", tenant: "acme", userId: "u1", sessionId: "s1" };
    const call = { type: "tool_use" as const, id: "toolu_1", name: "delete_resource", input: {} };
    const journal = new RedisToolJournal({ redis, prefix, waitReplicas: 1, waitTimeoutMs: 300 });
    const entry = journal.entryKey(run, call.id);
    // Right after the cluster formed, its nodes may not have told each other of the replicas yet.
    const { master, replicas } = await vi.waitFor(
      async () => {
        const nodes = await cluster().slotNodes(entry);
        expect(nodes.replicas).toHaveLength(1);
        return nodes;
      },
      { timeout: 60_000, interval: 200 },
    );
    const replicaPort = replicas[0] as number;
    const replica = new Redis({ host: "127.0.0.1", port: replicaPort });
    onTestFinished(() => replica.disconnect());
    await vi.waitFor(async () => expect(await roleOf(replicaPort)).toBe("slave connected"), {
      timeout: 60_000,
      interval: 200,
    });
    // A WAIT sent to another master would answer at once: its replica is up.
    const pid = Number(/^process_id:(\d+)/m.exec(await replica.info("server"))?.[1]);
    process.kill(pid, "SIGSTOP");
    try {
      await expect(journal.begin(run, call)).rejects.toMatchObject({ code: "REDIS_UNAVAILABLE" });
      const onMaster = new Redis({ host: "127.0.0.1", port: master });
      onTestFinished(() => onMaster.disconnect());
      expect(await onMaster.exists(entry)).toBe(0);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await vi.waitFor(async () => expect(await roleOf(replicaPort)).toBe("slave connected"), {
      timeout: 60_000,
      interval: 200,
    });
    const again = new RedisToolJournal({ redis, prefix, waitReplicas: 1, waitTimeoutMs: 10_000 });
    expect(await again.begin(run, call)).toEqual({ status: "fresh" });
    await replica.call("READONLY");
    expect(await replica.get(entry)).toBe("started");
  }, 120_000);
});

describe("a Redis Cluster master replaced by its replica while tasks run", () => {
  it("planned (CLUSTER FAILOVER): every task completes, none fails, each tool runs once, the audit chain verifies", async () => {
    // The workers wait for a replica to hold each tool call's claim: through the failover too.
    await tasksThroughSlotFailover(
      "{agentry-fo}",
      async ({ master, replica }) => {
        const promoted = new Redis({ host: "127.0.0.1", port: replica });
        await promoted.cluster("FAILOVER").finally(() => promoted.disconnect());
        await vi.waitFor(async () => expect(await roleOf(master)).toMatch(/^slave/), {
          timeout: 60_000,
          interval: 200,
        });
      },
      { AGENTRY_REDIS_WAIT_REPLICAS: "1" },
    );
  }, 300_000);

  // Last: the dead master stays down.
  it("unplanned (the master dies, the cluster promotes its replica): the same holds", async () => {
    await tasksThroughSlotFailover("{agentry-kill}", async ({ master }) => {
      const dying = new Redis({ host: "127.0.0.1", port: master, retryStrategy: () => null });
      dying.on("error", () => undefined);
      await dying.shutdown("NOSAVE").catch(() => undefined);
      dying.disconnect();
    });
  }, 300_000);
});
