import { describe, expect, it, onTestFinished, vi } from "vitest";
import { type Cluster, Redis } from "ioredis";
import { createRedis, readEvictionStates } from "@agentry/core";
import { AgentryClient } from "@agentry/runtime";
import { useRedisCluster } from "@agentry/testkit";
import { startWorkerProcess, waitStarted } from "./worker-processes.js";

// An operator restarts workers while one master of the Redis Cluster is down (mid-failover, or
// lost without a replica). The deployment's keys live on another master, so the workers can run
// tasks: the start checks that ask every master (its eviction policy) must not stop them. They
// name the master they could not read and read it again later.
const cluster = useRedisCluster({ nodes: 3 });

const PREFIX = "{agentry}";

describe("a Redis Cluster with one master down", () => {
  it("a connection that has not learnt the masters yet reads every master's eviction setting, not none", async () => {
    const conn = createRedis({ url: cluster().url, role: "worker" });
    onTestFinished(() => conn.disconnect());
    const states = await readEvictionStates(conn);
    const byPort = states.map((s) => [Number(s.node.split(":")[1]), s.policy] as const);
    expect(byPort.sort(([a], [b]) => a - b)).toEqual(
      [...cluster().ports].sort((a, b) => a - b).map((p) => [p, "noeviction"]),
    );
  }, 60_000);

  it("a worker and a producer start on the masters they can reach, name the one they cannot, and tasks run", async () => {
    const owner = (await cluster().slotNodes(PREFIX)).master;
    const down = cluster().ports.find((p) => p !== owner) as number;
    // The masters still up serve their slots although one master's are uncovered.
    for (const port of cluster().ports) {
      // No reconnect: SHUTDOWN closes the connection it was sent on.
      const node = new Redis({ host: "127.0.0.1", port, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      node.on("error", () => undefined);
      try {
        await node.config("SET", "cluster-require-full-coverage", "no");
        if (port === down) await node.shutdown("NOSAVE").catch(() => undefined);
      } finally {
        node.disconnect();
      }
    }

    // A connection whose pool has dropped the down master (ioredis does once its connection
    // fails) still names it, from the slots map, and does not mistake it for a master it read.
    const conn = createRedis({ url: cluster().url, role: "worker" }) as unknown as Cluster;
    onTestFinished(() => conn.disconnect());
    await conn.ping();
    const dropped = new Promise<void>((resolve) =>
      conn.on("-node", (node: Redis) => node.options.port === down && resolve()),
    );
    await conn
      .nodes("master")
      .find((n) => n.options.port === down)
      ?.ping()
      .catch(() => undefined);
    await dropped;
    expect(conn.nodes("master").map((n) => n.options.port)).not.toContain(down);
    const states = await readEvictionStates(conn);
    expect(states.find((s) => s.node === `127.0.0.1:${down}`)?.unreachable).toBeDefined();
    expect(states.filter((s) => s.unreachable === undefined).map((s) => s.policy)).toEqual([
      "noeviction",
      "noeviction",
    ]);

    const w = startWorkerProcess("master-down", {
      REDIS_URL: cluster().url,
      AGENTRY_PREFIX: PREFIX,
      AGENTRY_LLM: "scripted",
    });
    onTestFinished(() => w.kill());
    await waitStarted(w);
    const unreachable = w
      .output()
      .split("\n")
      .find((l) => l.includes('"event":"redis-node-unreachable"'));
    expect(unreachable, w.output()).toContain(`127.0.0.1:${down}`);

    // The producer starts too, naming the master it could not read.
    const producer = startWorkerProcess(
      "master-down-producer",
      { REDIS_URL: cluster().url, AGENTRY_PREFIX: PREFIX, PORT: "0", AGENTRY_INSECURE_DEV_KEY: "1" },
      { app: "producer" },
    );
    onTestFinished(() => producer.kill());
    await vi.waitFor(
      () => {
        if (producer.child.exitCode !== null) throw new Error(`producer exited:\n${producer.output()}`);
        expect(producer.output()).toContain("producer listening");
      },
      { timeout: 120_000, interval: 100 },
    );
    const named = producer
      .output()
      .split("\n")
      .find((l) => l.includes('"event":"redis-node-unreachable"'));
    expect(named, producer.output()).toContain(`127.0.0.1:${down}`);

    const client = new AgentryClient({ url: cluster().url, prefix: PREFIX });
    onTestFinished(() => client.close());
    const { taskId } = await client.submit({ prompt: "What is the weather in Paris?" }, { tenant: "acme" });
    expect((await client.wait(taskId, { timeoutMs: 60_000 })).steps).toBeGreaterThan(0);

    // The masters up lose their script cache (a SCRIPT FLUSH, a restart): the worker loads its
    // scripts again on the masters it reaches, not failing on the one down.
    for (const port of cluster().ports.filter((p) => p !== down)) {
      const node = new Redis({ host: "127.0.0.1", port });
      await node.script("FLUSH").finally(() => node.disconnect());
    }
    const again = await client.submit({ prompt: "And in Rome?" }, { tenant: "acme" });
    expect((await client.wait(again.taskId, { timeoutMs: 60_000 })).steps).toBeGreaterThan(0);
    // In its first attempt: no attempt failed on a script load that reached the down master.
    expect(w.output()).not.toContain('"event":"task-retry"');
    expect(w.output()).not.toContain('"event":"task-waits-for-redis"');
  }, 180_000);
});
