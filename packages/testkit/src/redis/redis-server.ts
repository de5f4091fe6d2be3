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
 * With AGENTRY_TEST_REDIS_LOGS=<dir>: the arguments that make a test's redis-server (or Sentinel,
 * `name` telling them apart) keep its log at `<dir>/<name>.log`, to read after a failed run.
 */
export function redisLogArgs(name: string): string[] {
  const dir = process.env.AGENTRY_TEST_REDIS_LOGS;
  return dir ? ["--logfile", join(dir, `${name}.log`)] : [];
}

/**
 * Starts a private `redis-server` child on loopback. The process is killed on `stop()`
 * and when the parent exits. Used by the fixture and by tests that restart Redis.
 */
export async function startRedisServer(options: StartRedisServerOptions = {}): Promise<
  TestRedisServer & {
    readonly process: ChildProcess;
    readonly dir: string;
    /** SIGKILLs the server without removing its data directory (for restart tests). */
    kill(): Promise<void>;
  }
> {
  if (!hasRedisServerBinary()) throw new Error(REDIS_SERVER_MISSING);
  const port = options.port ?? (await freePort());
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "agentry-redis-"));
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    options.appendonly ? "yes" : "no",
    "--appendfsync",
    "always",
    "--dir",
    dir,
    "--maxmemory-policy",
    "noeviction",
    ...redisLogArgs(`redis-${port}`),
    ...(options.args ?? []),
  ];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.on("error", (err) => (output += `${err.message}\n`));
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

/** Docker image of the Redis a test run starts in a container: the version docker-compose.yml deploys. */
export const TEST_REDIS_IMAGE = "redis:7.4";

const REDIS_SERVER_MISSING =
  "redis-server is not on PATH: install it (Debian: apt-get install redis-server; .ci/run does). " +
  "Tests that start their own Redis (restarts, Redis Cluster, ACLs) need it even with Docker or REDIS_URL";

/**
 * Starts Redis in a container through testcontainers. Resolves `undefined` when no container
 * engine (Docker, or a socket compatible with it) answers; rejects when one answers but the
 * container does not start (an image that cannot be pulled, say).
 */
export async function startRedisContainer(
  image: string = TEST_REDIS_IMAGE,
): Promise<TestRedisServer | undefined> {
  const { getContainerRuntimeClient } = await import("testcontainers").catch((err: unknown) => {
    throw new Error(
      `testcontainers (an optional dependency of @agentry/testkit) does not load: ${String(err)}`,
      { cause: err },
    );
  });
  try {
    await getContainerRuntimeClient();
  } catch {
    return undefined;
  }
  const { RedisContainer } = await import("@testcontainers/redis");
  const container = await new RedisContainer(image).start();
  return {
    url: container.getConnectionUrl(),
    port: container.getPort(),
    kind: "container",
    stop: async () => void (await container.stop()),
  };
}

/** Test seams of {@link obtainTestRedis}. Internal. For test use only. May change without notice. */
export interface ObtainTestRedisInternals {
  env?: Record<string, string | undefined>;
  startContainer?: () => Promise<TestRedisServer | undefined>;
  hasRedisServer?: () => boolean;
  warn?: (message: string) => void;
}

/**
 * The Redis a test run uses: `REDIS_URL` when set (it must answer PING); else a Redis container
 * (testcontainers, {@link TEST_REDIS_IMAGE}) when a Docker engine answers; else a private
 * `redis-server` child on a free port. A Docker engine whose container does not start falls back
 * to `redis-server` with a warning on stderr. Rejects, naming all three ways, when none is there.
 */
export async function obtainTestRedis(_internal: ObtainTestRedisInternals = {}): Promise<TestRedisServer> {
  const env = _internal.env ?? process.env;
  const startContainer = _internal.startContainer ?? (() => startRedisContainer());
  const hasRedisServer = _internal.hasRedisServer ?? hasRedisServerBinary;
  const warn = _internal.warn ?? ((message: string) => void process.stderr.write(`${message}\n`));

  const fromEnv = env.REDIS_URL;
  if (fromEnv) {
    if (!(await redisAnswers(fromEnv))) throw new Error(`REDIS_URL=${fromEnv} does not answer PING`);
    return {
      url: fromEnv,
      port: Number(new URL(fromEnv).port || 6379),
      kind: "external",
      stop: async () => {},
    };
  }
  let containerProblem = "no Docker engine answers";
  try {
    const container = await startContainer();
    if (container) return container;
  } catch (err) {
    containerProblem = `the Redis container did not start: ${err instanceof Error ? err.message : String(err)}`;
    if (hasRedisServer()) warn(`agentry testkit: ${containerProblem}; using a private redis-server instead`);
  }
  if (hasRedisServer()) return startRedisServer();
  throw new Error(
    "No Redis for tests: set REDIS_URL to a Redis that answers, run a Docker engine (testcontainers starts " +
      `${TEST_REDIS_IMAGE}), or install redis-server (Debian: apt-get install redis-server). Docker: ${containerProblem}`,
  );
}

/**
 * Asks the node on `port` (loopback) `check` until it says yes; past `deadline` (epoch ms)
 * throws `what` did not happen. For nodes a test just started: a cluster forming, a replica
 * linking up, a Sentinel learning its replicas.
 */
export async function pollNode(
  port: number,
  check: (conn: Redis) => Promise<boolean>,
  deadline: number,
  what: string,
): Promise<void> {
  const conn = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 1 });
  try {
    while (!(await check(conn))) {
      if (Date.now() > deadline) throw new Error(`${what} (port ${port})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    conn.disconnect();
  }
}
