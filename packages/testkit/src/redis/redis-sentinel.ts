import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { freePort, pollNode, redisAnswers, redisLogArgs } from "./redis-server.js";
import { startRedisReplicated } from "./redis-replicas.js";

/** A private Redis master with replicas, watched by Redis Sentinels, on loopback. */
export interface TestRedisSentinel {
  /** `redis+sentinel://127.0.0.1:s1,.../<name>`: what Agentry's REDIS_URL takes. */
  readonly url: string;
  /** The master's name in the Sentinels' configuration. */
  readonly name: string;
  /** Ports of the data nodes (the first was the master at start; a failover changes that: ask {@link master}). */
  readonly nodes: number[];
  readonly sentinels: number[];
  /** The port of the master, as the first Sentinel that answers names it now. */
  master(): Promise<number>;
  stop(): Promise<void>;
}

export interface SentinelOptions {
  replicas?: number;
  sentinels?: number;
  name?: string;
  /** How long a master is silent before a Sentinel calls it down (`down-after-milliseconds`). */
  downAfterMs?: number;
}

/**
 * Starts a master, `replicas` replicas of it (2 by default) and `sentinels` Sentinels (3 by
 * default, quorum 2) that fail over a master silent for `downAfterMs` (5 s by default). Resolves
 * once every Sentinel knows every replica. Needs `redis-server` (Debian: redis-server), which runs
 * Sentinels too.
 *
 * Shorter is faster but false: on a loaded machine a live master (or a Sentinel itself) misses a
 * second of PINGs now and then, and with 1 s the Sentinels failed over a healthy master just
 * promoted, losing writes fewer replicas had acknowledged than it had.
 */
export async function startRedisSentinel(options: SentinelOptions = {}): Promise<TestRedisSentinel> {
  const name = options.name ?? "agentry";
  const data = await startRedisReplicated({ replicas: options.replicas ?? 2 });
  const master = data.master;
  const servers = [master, ...data.replicas];
  const sentinelProcs: { child: ChildProcess; port: number }[] = [];
  const dir = mkdtempSync(join(tmpdir(), "agentry-sentinel-"));
  const stop = async () => {
    await Promise.all(
      sentinelProcs.map(
        ({ child }) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGKILL");
          }),
      ),
    );
    await data.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < (options.sentinels ?? 3); i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          "bind 127.0.0.1",
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 5_000}`,
          `sentinel failover-timeout ${name} 5000`,
          `sentinel parallel-syncs ${name} 2`,
          "",
        ].join("\n"),
      );
      const child = spawn("redis-server", [conf, "--sentinel", ...redisLogArgs(`sentinel-${port}`)], {
        stdio: "ignore",
      });
      const onExit = () => child.kill("SIGKILL");
      process.once("exit", onExit);
      child.once("exit", () => process.off("exit", onExit));
      sentinelProcs.push({ child, port });
    }
    const deadline = Date.now() + 30_000;
    for (const { port } of sentinelProcs) {
      while (!(await redisAnswers(`redis://127.0.0.1:${port}`, 500))) {
        if (Date.now() > deadline) throw new Error(`Redis Sentinel on port ${port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      }
      // Each Sentinel learns the replicas from the master's INFO (every 10 s at first, so wait).
      await pollNode(
        port,
        async (conn) =>
          ((await conn.call("SENTINEL", "REPLICAS", name)) as unknown[]).length === servers.length - 1,
        deadline,
        "a Redis Sentinel did not see the replicas",
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const sentinels = sentinelProcs.map((s) => s.port);
  return {
    url: `redis+sentinel://${sentinels.map((p) => `127.0.0.1:${p}`).join(",")}/${name}`,
    name,
    nodes: servers.map((s) => s.port),
    sentinels,
    async master() {
      for (const port of sentinels) {
        const conn = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 1, retryStrategy: () => null });
        conn.on("error", () => undefined);
        try {
          const addr = (await conn.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)) as string[] | null;
          if (addr?.[1]) return Number(addr[1]);
        } catch {
          // The next Sentinel.
        } finally {
          conn.disconnect();
        }
      }
      throw new Error("no Redis Sentinel names a master");
    },
    stop,
  };
}

/**
 * A private Sentinel-watched Redis for one test file: started before its tests (`beforeAll`),
 * stopped after them. Read it inside a test or a hook, once it has started.
 */
export function useRedisSentinel(options: SentinelOptions = {}): () => TestRedisSentinel {
  let sentinel: TestRedisSentinel | undefined;
  beforeAll(async () => {
    sentinel = await startRedisSentinel(options);
  }, 90_000);
  afterAll(async () => {
    await sentinel?.stop();
  });
  return () => {
    if (!sentinel)
      throw new Error("the Redis Sentinel setup is read before it started (read it inside a test)");
    return sentinel;
  };
}
