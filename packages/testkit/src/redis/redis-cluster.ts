import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { freePort, pollNode, startRedisServer } from "./redis-server.js";

const run = promisify(execFile);

/** A private Redis Cluster on loopback: masters, and replicas when asked for. */
export interface TestRedisCluster {
  /** `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...` — what Agentry's REDIS_URL takes. */
  readonly url: string;
  /** Every node's port, masters' and replicas' (which is which changes with a failover: ask `ROLE`). */
  readonly ports: number[];
  /**
   * The master serving `key`'s slot and its replicas, by port, as the first node sees them now
   * (`CLUSTER NODES`).
   */
  slotNodes(key: string): Promise<{ master: number; replicas: number[] }>;
  stop(): Promise<void>;
}

/**
 * Starts `nodes` redis-server processes in cluster mode and joins them with
 * `redis-cli --cluster create`, `replicas` per master (none by default: every node a master),
 * then waits for `cluster_state:ok`.
 * Needs `redis-server` and `redis-cli` (Debian: redis-server, redis-tools).
 */
export async function startRedisCluster(
  options: { nodes?: number; replicas?: number } = {},
): Promise<TestRedisCluster> {
  const count = options.nodes ?? 3;
  const replicas = options.replicas ?? 0;
  try {
    await run("redis-cli", ["--version"]);
  } catch (err) {
    throw new Error(
      "redis-cli is not on PATH: the Redis Cluster test joins its nodes with it (Debian: apt-get install redis-tools)",
      {
        cause: err,
      },
    );
  }
  const servers: Awaited<ReturnType<typeof startRedisServer>>[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    servers.push(
      await startRedisServer({
        port,
        args: [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          `nodes-${port}.conf`,
          "--cluster-node-timeout",
          "2000",
        ],
      }),
    );
  }
  const ports = servers.map((s) => s.port);
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    await run(
      "redis-cli",
      [
        "--cluster",
        "create",
        ...ports.map((p) => `127.0.0.1:${p}`),
        "--cluster-replicas",
        String(replicas),
        "--cluster-yes",
      ],
      {
        timeout: 30_000,
      },
    );
    const deadline = Date.now() + 20_000;
    for (const port of ports)
      await pollNode(
        port,
        async (c) => String(await c.cluster("INFO")).includes("cluster_state:ok"),
        deadline,
        "a cluster node did not reach cluster_state:ok",
      );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
    ports,
    slotNodes: (key) => slotNodes(ports[0] as number, key),
    stop,
  };
}

async function slotNodes(port: number, key: string): Promise<{ master: number; replicas: number[] }> {
  const conn = new Redis({ host: "127.0.0.1", port });
  try {
    const slot = Number(await conn.cluster("KEYSLOT", key));
    // <id> <host:port@bus> <flags> <master id or -> <ping> <pong> <epoch> <link> <slot ranges...>
    const nodes = String(await conn.cluster("NODES"))
      .trim()
      .split("\n")
      .map((line) => line.split(" "));
    const portOf = (node: string[]) => Number(node[1]?.split("@")[0]?.split(":")[1]);
    const owner = nodes.find((n) =>
      n.slice(8).some((range) => {
        const [from, to] = range.split("-").map(Number);
        return from !== undefined && slot >= from && slot <= (to ?? from);
      }),
    );
    if (!owner) throw new Error(`no master serves slot ${slot}:\n${nodes.join("\n")}`);
    return { master: portOf(owner), replicas: nodes.filter((n) => n[3] === owner[0]).map(portOf) };
  } finally {
    conn.disconnect();
  }
}

/**
 * A private Redis Cluster for one test file: started before its tests (`beforeAll`), stopped
 * after them. Read it inside a test or a hook, once it has started.
 */
export function useRedisCluster(options: { nodes?: number; replicas?: number } = {}): () => TestRedisCluster {
  let cluster: TestRedisCluster | undefined;
  beforeAll(async () => {
    cluster = await startRedisCluster(options);
  }, 90_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error("the Redis Cluster is read before it started (read it inside a test)");
    return cluster;
  };
}
