import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

/** A Redis server owned by a test run. */
export interface TestRedisServer {
  readonly url: string;
  readonly port: number;
  /** How it was obtained. */
  readonly kind: "external" | "child" | "container";
  /** Stops the server (no-op for an external one). */
  stop(): Promise<void>;
}

/** Options for {@link startRedisServer}. */
export interface StartRedisServerOptions {
  /** Port to bind. @defaultValue a free port */
  port?: number;
  /** Turn AOF on (for restart tests). @defaultValue false */
  appendonly?: boolean;
  /** Data directory. @defaultValue a fresh temporary directory, removed on stop */
  dir?: string;
  /** Extra `redis-server` arguments, e.g. `["--cluster-enabled", "yes"]`. */
  args?: string[];
}

/** Finds a free TCP port on loopback. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** True when a `redis-server` binary is on PATH. */
export function hasRedisServerBinary(): boolean {
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** PINGs a Redis URL; resolves true when it answers within `timeoutMs`. */
export async function redisAnswers(url: string, timeoutMs = 1_500): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  client.on("error", () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * Starts a private `redis-server` child on loopback. The process is killed on `stop()`
 * and when the parent exits. Used by the fixture and by tests that restart Redis.
 */
export async function startRedisServer(options: StartRedisServerOptions = {}): Promise<TestRedisServer & {
  readonly process: ChildProcess;
  readonly dir: string;
  /** SIGKILLs the server without removing its data directory (for restart tests). */
  kill(): Promise<void>;
}> {
  const port = options.port ?? (await freePort());
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "agentry-redis-"));
  const args = [
    "--port", String(port),
    "--bind", "127.0.0.1",
    "--save", "",
    "--appendonly", options.appendonly ? "yes" : "no",
    "--appendfsync", "always",
    "--dir", dir,
    "--maxmemory-policy", "noeviction",
    ...(options.args ?? []),
  ];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
  const onExit = () => child.kill("SIGKILL");
  process.once("exit", onExit);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await redisAnswers(url, 500))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`redis-server did not start on port ${port}:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const waitExit = () =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    url,
    port,
    kind: "child",
    process: child,
    dir,
    async kill() {
      process.off("exit", onExit);
      child.kill("SIGKILL");
      await waitExit();
    },
    async stop() {
      process.off("exit", onExit);
      child.kill("SIGTERM");
      await waitExit();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The Redis the test suite uses: `REDIS_URL` if given, else a private `redis-server`
 * child on a free port, else a testcontainers Redis when Docker is available.
 */
export async function obtainTestRedis(): Promise<TestRedisServer> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) {
    if (!(await redisAnswers(fromEnv))) throw new Error(`REDIS_URL=${fromEnv} does not answer PING`);
    return { url: fromEnv, port: Number(new URL(fromEnv).port || 6379), kind: "external", stop: async () => {} };
  }
  if (hasRedisServerBinary()) return startRedisServer();
  try {
    const { RedisContainer } = (await import(/* @vite-ignore */ "@testcontainers/redis" as string)) as {
      RedisContainer: new (image: string) => { start(): Promise<{ getConnectionUrl(): string; getPort(): number; stop(): Promise<unknown> }> };
    };
    const container = await new RedisContainer("redis:7-alpine").start();
    return {
      url: container.getConnectionUrl(),
      port: container.getPort(),
      kind: "container",
      stop: async () => void (await container.stop()),
    };
  } catch (err) {
    throw new Error(
      "No Redis for tests: set REDIS_URL, install redis-server (apt-get install redis-server), " +
        `or run Docker for testcontainers (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
}
