import { Redis, type RedisOptions } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { pollNode, startRedisServer } from "./redis-server.js";

type Server = Awaited<ReturnType<typeof startRedisServer>>;

/** A private Redis master and its replicas on loopback, every replica's link up. */
export interface TestRedisReplicated {
  readonly master: Server;
  readonly replicas: Server[];
  /** Stops every server (a replica stopped with SIGSTOP is continued first). */
  stop(): Promise<void>;
}

/**
 * Starts a master and `replicas` replicas of it (1 by default) and resolves once every replica
 * reports its link to the master up. Needs `redis-server` (Debian: redis-server).
 */
export async function startRedisReplicated(
  options: { replicas?: number } = {},
): Promise<TestRedisReplicated> {
  const master = await startRedisServer();
  const replicas: Server[] = [];
  const stop = async () => {
    for (const r of replicas) r.process.kill("SIGCONT");
    await Promise.all([...replicas, master].map((s) => s.stop()));
  };
  try {
    for (let i = 0; i < (options.replicas ?? 1); i++)
      replicas.push(await startRedisServer({ args: ["--replicaof", "127.0.0.1", String(master.port)] }));
    const deadline = Date.now() + 30_000;
    for (const r of replicas)
      await pollNode(
        r.port,
        async (conn) => /master_link_status:up/.test(await conn.info("replication")),
        deadline,
        "a replica did not link up with its master",
      );
  } catch (err) {
    await stop();
    throw err;
  }
  return { master, replicas, stop };
}

/** What {@link useRedisReplicated} gives a test file: read it inside a test or a later hook. */
export interface RedisReplicatedFixture {
  readonly master: Server;
  /** The first replica. */
  readonly replica: Server;
  /** A connection to `node` (loopback), closed after the file's tests. */
  connect(node: Server, options?: RedisOptions): Redis;
}

/**
 * A master and its replicas for the test file, started before its tests and stopped after them
 * (see {@link startRedisReplicated}), with the connections it made closed.
 */
export function useRedisReplicated(options: { replicas?: number } = {}): RedisReplicatedFixture {
  let servers: TestRedisReplicated | undefined;
  const connections: Redis[] = [];
  beforeAll(async () => {
    servers = await startRedisReplicated(options);
  }, 60_000);
  afterAll(async () => {
    for (const conn of connections.splice(0)) conn.disconnect();
    await servers?.stop();
  });
  const started = (): TestRedisReplicated => {
    if (!servers) throw new Error("the replicated Redis is read before it started (read it inside a test)");
    return servers;
  };
  return {
    get master() {
      return started().master;
    },
    get replica() {
      return started().replicas[0] as Server;
    },
    connect(node, connectionOptions = {}) {
      const conn = new Redis(node.port, "127.0.0.1", connectionOptions);
      connections.push(conn);
      return conn;
    },
  };
}
