import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import { AgentryError } from "../errors/agentry-error.js";

/**
 * What a connection is for. Each role gets the settings BullMQ and Agentry need:
 * - `worker`: blocking commands, retries forever (`maxRetriesPerRequest: null`).
 * - `producer`: fails fast when Redis is down (no offline queue), so `submit` never hangs.
 * - `subscriber`: pub/sub, reconnects forever.
 * - `command`: short commands from a long-lived process; queued while reconnecting, bounded retries.
 */
export type RedisRole = "worker" | "producer" | "subscriber" | "command";

/** Options for {@link createRedis}. */
export interface CreateRedisOptions {
  /** @defaultValue `redis://127.0.0.1:6379` */
  url?: string;
  /** @defaultValue `command` */
  role?: RedisRole;
  /** Connection name shown by `CLIENT LIST`. */
  connectionName?: string;
  /** Extra ioredis options. Never `keyPrefix`: Agentry and BullMQ prefix keys themselves. */
  extra?: Omit<RedisOptions, "keyPrefix">;
}

/** The default Redis URL when none is configured. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/** Builds the ioredis options for a role (exported so BullMQ connections can share them). */
export function redisOptionsFor(role: RedisRole): RedisOptions {
  const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000);
  switch (role) {
    case "worker":
    case "subscriber":
      return { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy };
    case "producer":
      return {
        maxRetriesPerRequest: 1,
        enableOfflineQueue: false,
        connectTimeout: 2_000,
        commandTimeout: 5_000,
        retryStrategy,
      };
    case "command":
      return { maxRetriesPerRequest: 3, connectTimeout: 5_000, retryStrategy };
  }
}

/** Where a Redis URL points: one server, or a Redis Cluster given by its seed nodes. */
export type RedisTarget =
  | { kind: "single"; url: string }
  | {
      kind: "cluster";
      nodes: { host: string; port: number }[];
      username?: string;
      password?: string;
      tls: boolean;
    };

/**
 * Parses `REDIS_URL`. `redis://` and `rediss://` name one server; `redis+cluster://` (or
 * `rediss+cluster://`) names a Redis Cluster by one or more seed nodes:
 * `redis+cluster://user:pass@10.0.0.1:7000,10.0.0.2:7000`.
 */
export function parseRedisTarget(url: string): RedisTarget {
  const match = /^(rediss?)\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)/.exec(url);
  if (!match) return { kind: "single", url };
  const nodes = (match[4] ?? "").split(",").map((hp) => {
    const [host, port] = hp.trim().split(":");
    return { host: host || "127.0.0.1", port: Number(port || 6379) };
  });
  if (nodes.length === 0 || nodes.some((n) => !Number.isInteger(n.port) || n.port <= 0)) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `Bad Redis Cluster URL "${url}" (expected redis+cluster://host:port[,host:port...])`,
    );
  }
  return {
    kind: "cluster",
    nodes,
    ...(match[2] ? { username: decodeURIComponent(match[2]) } : {}),
    ...(match[3] ? { password: decodeURIComponent(match[3]) } : {}),
    tls: match[1] === "rediss",
  };
}

/**
 * Creates an ioredis client with the settings for its role. A `redis+cluster://` URL gives an
 * ioredis `Cluster`, typed as `Redis`: Agentry only uses commands both share, and every key of a
 * script carries the prefix's hash tag, so each script runs on one node.
 */
export function createRedis(options: CreateRedisOptions = {}): Redis {
  const role = options.role ?? "command";
  const { keyPrefix: _ignored, ...extra } = (options.extra ?? {}) as RedisOptions;
  const target = parseRedisTarget(options.url ?? DEFAULT_REDIS_URL);
  if (target.kind === "cluster") {
    const redisOptions: RedisOptions = {
      ...redisOptionsFor(role),
      ...(target.username ? { username: target.username } : {}),
      ...(target.password ? { password: target.password } : {}),
      ...(target.tls ? { tls: {} } : {}),
      ...(options.connectionName ? { connectionName: options.connectionName } : {}),
      ...extra,
    };
    const base = redisOptionsFor(role);
    const clusterOptions: ClusterOptions = {
      redisOptions,
      maxRedirections: 16,
      ...(base.enableOfflineQueue === false ? { enableOfflineQueue: false } : {}),
      clusterRetryStrategy: (times: number) => Math.min(100 * times, 2_000),
    };
    const cluster = new Cluster(target.nodes, clusterOptions);
    // BullMQ reads maxRetriesPerRequest from the client's options.
    (cluster.options as ClusterOptions & { maxRetriesPerRequest?: number | null }).maxRetriesPerRequest =
      redisOptions.maxRetriesPerRequest ?? null;
    return cluster as unknown as Redis;
  }
  return new Redis(target.url, {
    ...redisOptionsFor(role),
    lazyConnect: false,
    ...(options.connectionName ? { connectionName: options.connectionName } : {}),
    ...extra,
  });
}

/**
 * A new connection like `client` (same server or cluster) with some options changed, e.g. a
 * blocking connection (`maxRetriesPerRequest: null`) next to a fail-fast one.
 */
export function duplicateRedis(client: Redis, overrides: RedisOptions): Redis {
  const maybeCluster = client as unknown as {
    isCluster?: boolean;
    startupNodes?: unknown[];
    options: ClusterOptions;
  };
  if (maybeCluster.isCluster) {
    const redisOptions = { ...maybeCluster.options.redisOptions, ...overrides };
    const cluster = new Cluster(maybeCluster.startupNodes as ConstructorParameters<typeof Cluster>[0], {
      ...maybeCluster.options,
      redisOptions,
      ...(overrides.enableOfflineQueue !== undefined
        ? { enableOfflineQueue: overrides.enableOfflineQueue }
        : {}),
    });
    (cluster.options as ClusterOptions & { maxRetriesPerRequest?: number | null }).maxRetriesPerRequest =
      redisOptions.maxRetriesPerRequest ?? null;
    return cluster as unknown as Redis;
  }
  return client.duplicate(overrides);
}

/** Waits until a client is ready (or fails after `timeoutMs`). */
export async function waitForReady(client: Redis, timeoutMs = 5_000): Promise<void> {
  if (client.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new AgentryError(
          "REDIS_UNAVAILABLE",
          `Redis not ready after ${timeoutMs} ms (status ${client.status})`,
        ),
      );
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off("ready", onReady);
    };
    client.on("ready", onReady);
  });
}
