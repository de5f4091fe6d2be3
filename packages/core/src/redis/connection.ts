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

/** Where a Redis URL points: one server, a Redis Cluster by its seed nodes, or the master Sentinels name. */
export type RedisTarget =
  | { kind: "single"; url: string }
  | {
      kind: "cluster";
      nodes: { host: string; port: number }[];
      username?: string;
      password?: string;
      tls: boolean;
    }
  | {
      kind: "sentinel";
      /** The Sentinels asked where the master is. */
      sentinels: { host: string; port: number }[];
      /** The master's name in the Sentinels' configuration (`sentinel monitor <name> ...`). */
      name: string;
      username?: string;
      password?: string;
      /** The Sentinels' own password, when they have one (`?sentinelPassword=`). */
      sentinelPassword?: string;
      tls: boolean;
    };

/**
 * Parses `REDIS_URL`. `redis://` and `rediss://` name one server; `redis+cluster://` (or
 * `rediss+cluster://`) names a Redis Cluster by one or more seed nodes:
 * `redis+cluster://user:pass@10.0.0.1:7000,10.0.0.2:7000`; `redis+sentinel://` (or
 * `rediss+sentinel://`) names the master that Redis Sentinels watch, by the Sentinels and the
 * master's name: `redis+sentinel://user:pass@10.0.0.1:26379,10.0.0.2:26379/mymaster`, the
 * Sentinels' own password, if any, as `?sentinelPassword=`.
 */
export function parseRedisTarget(url: string): RedisTarget {
  const match =
    /^(rediss?)\+(cluster|sentinel):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)(?:\/([^?#]*))?(?:\?([^#]*))?/.exec(
      url,
    );
  if (!match) return { kind: "single", url };
  const kind = match[2] as "cluster" | "sentinel";
  const expected =
    kind === "cluster"
      ? "redis+cluster://host:port[,host:port...]"
      : "redis+sentinel://host:port[,host:port...]/<master name>";
  const nodes = (match[5] ?? "").split(",").map((hp) => {
    const [host, port] = hp.trim().split(":");
    return { host: host || "127.0.0.1", port: Number(port || (kind === "cluster" ? 6379 : 26379)) };
  });
  if (nodes.length === 0 || nodes.some((n) => !Number.isInteger(n.port) || n.port <= 0)) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `Bad Redis ${kind === "cluster" ? "Cluster" : "Sentinel"} URL "${url}" (expected ${expected})`,
    );
  }
  const auth = {
    ...(match[3] ? { username: decodeURIComponent(match[3]) } : {}),
    ...(match[4] ? { password: decodeURIComponent(match[4]) } : {}),
  };
  const tls = match[1] === "rediss";
  if (kind === "cluster") return { kind, nodes, ...auth, tls };
  const name = decodeURIComponent(match[6] ?? "");
  if (name === "") {
    throw new AgentryError(
      "INVALID_CONFIG",
      `Redis Sentinel URL "${url}" names no master (expected ${expected}: the name the Sentinels monitor)`,
    );
  }
  const sentinelPassword = new URLSearchParams(match[7] ?? "").get("sentinelPassword");
  return {
    kind,
    sentinels: nodes,
    name,
    ...auth,
    ...(sentinelPassword ? { sentinelPassword } : {}),
    tls,
  };
}

/**
 * Whether a Redis error says the node is a replica now: the master this connection knew was
 * demoted in a failover. A Sentinel client reconnects to the new master and sends the command again.
 */
function isReadOnlyError(err: Error): boolean {
  return err.message.startsWith("READONLY");
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
  if (target.kind === "sentinel") {
    return new Redis({
      ...redisOptionsFor(role),
      sentinels: target.sentinels,
      name: target.name,
      ...(target.username ? { username: target.username } : {}),
      ...(target.password ? { password: target.password } : {}),
      ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
      ...(target.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
      // Follow a failover: the Sentinels announce the new master (+switch-master), and a
      // command the demoted master refuses goes to the new one.
      failoverDetector: true,
      reconnectOnError: (err: Error) => (isReadOnlyError(err) ? 2 : false),
      lazyConnect: false,
      ...(options.connectionName ? { connectionName: options.connectionName } : {}),
      ...extra,
    });
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
