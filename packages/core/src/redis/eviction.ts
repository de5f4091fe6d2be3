import type { Cluster, Redis } from "ioredis";
import { withTimeout } from "../clock.js";
import { AgentryError } from "../errors/agentry-error.js";

/** A Redis node's eviction setting and what it has evicted, from `INFO`. */
export interface EvictionState {
  /** `host:port` of the node. */
  node: string;
  /** Its `maxmemory-policy`; undefined when its `INFO` has none (a server that does not say). */
  policy: string | undefined;
  /** Keys it has evicted since it started (`evicted_keys`); undefined when its `INFO` has none. */
  evictedKeys: number | undefined;
  /**
   * Why a master of a Redis Cluster could not be read (down, mid-failover, or slow to answer): it
   * holds other slots than the caller's, perhaps, so it does not stop a start; read it again later.
   */
  unreachable?: string;
}

/** How long one Cluster master may take to answer `INFO` before it counts as unreachable. */
export const EVICTION_READ_TIMEOUT_MS = 5_000;

/**
 * The eviction setting of every node that holds Agentry's keys: the server, or every master of a
 * Redis Cluster. Agentry's job locks, budget ledger, audit chain heads and once-markers must never
 * be evicted: a Redis that evicts keys under memory pressure (any `maxmemory-policy` but
 * `noeviction`) breaks the promises they keep without an error anyone sees, so a worker and a
 * producer refuse it at start and a worker stops taking jobs when one appears later.
 */
export async function readEvictionStates(
  redis: Redis | Cluster,
  options: { timeoutMs?: number } = {},
): Promise<EvictionState[]> {
  const timeoutMs = options.timeoutMs ?? EVICTION_READ_TIMEOUT_MS;
  const nodes = await mastersOf(redis, timeoutMs);
  return Promise.all(
    nodes.map(async ({ name, conn }) => {
      // A master the slots map names whose connection failed: the pool dropped it.
      if (!conn)
        return { node: name, policy: undefined, evictedKeys: undefined, unreachable: "no connection" };
      try {
        const read = Promise.all([conn.info("memory"), conn.info("stats")]);
        const [memory, stats] = redis.isCluster ? await withTimeout(read, timeoutMs, "INFO") : await read;
        const evicted = infoField(stats, "evicted_keys");
        return {
          node: name,
          policy: infoField(memory, "maxmemory_policy"),
          evictedKeys: evicted === undefined ? undefined : Number(evicted),
        };
      } catch (err) {
        // A user whose ACL refuses INFO cannot tell (the shipped users may run it).
        if (err instanceof Error && err.message.startsWith("NOPERM"))
          return { node: name, policy: undefined, evictedKeys: undefined };
        // One master of a cluster down does not make the others unreadable; the server itself is.
        if (!redis.isCluster) throw err;
        const reason = err instanceof Error ? err.message : String(err);
        return { node: name, policy: undefined, evictedKeys: undefined, unreachable: reason };
      }
    }),
  );
}

/** The server, or every master of a cluster's slots map (see {@link clusterMasters}), by name. */
async function mastersOf(
  redis: Redis | Cluster,
  timeoutMs: number,
): Promise<{ name: string; conn: Redis | undefined }[]> {
  return redis.isCluster
    ? clusterMasters(redis as Cluster, timeoutMs)
    : [{ name: nodeName(redis as Redis), conn: redis as Redis }];
}

function nodeName(conn: Redis): string {
  // A Sentinel client's master is where its connection went, not a configured address.
  const stream = (conn as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream;
  if (conn.options.sentinels && stream?.remoteAddress)
    return `${stream.remoteAddress}:${stream.remotePort ?? "?"} (master ${conn.options.name ?? "?"})`;
  return `${conn.options.host ?? "?"}:${conn.options.port ?? "?"}`;
}

/**
 * The masters of a cluster's slots map, once the connection has one, each with its pooled
 * connection. A master whose connection failed is gone from the pool (ioredis drops it and waits
 * for the next slots map) but still named by the map: it comes without a connection.
 */
async function clusterMasters(
  cluster: Cluster,
  timeoutMs: number,
): Promise<{ name: string; conn: Redis | undefined }[]> {
  if (cluster.status !== "ready") {
    let onReady: (() => void) | undefined;
    const ready = new Promise<void>((resolve) => cluster.once("ready", (onReady = resolve)));
    if (cluster.status === "wait") void cluster.connect().catch(() => undefined);
    await withTimeout(ready, timeoutMs)
      .catch(() => undefined)
      .finally(() => cluster.off("ready", onReady as () => void));
  }
  const pooled = new Map(cluster.nodes("master").map((conn) => [nodeName(conn), conn]));
  const named = new Set<string>();
  for (const owners of cluster.slots) if (owners?.[0]) named.add(owners[0]);
  for (const name of pooled.keys()) named.add(name);
  if (named.size === 0)
    throw new AgentryError(
      "REDIS_UNAVAILABLE",
      "the Redis Cluster's masters are not known yet (no slots map)",
    );
  return [...named].map((name) => ({ name, conn: pooled.get(name) }));
}

/** The nodes of `states` that could not be read. */
export function unreachableNodes(states: readonly EvictionState[]): EvictionState[] {
  return states.filter((s) => s.unreachable !== undefined);
}

/** The nodes of `states` whose policy evicts keys. */
export function evictingNodes(states: readonly EvictionState[]): EvictionState[] {
  return states.filter((s) => s.policy !== undefined && s.policy !== "noeviction");
}

/** "Redis at <node> evicts keys (maxmemory-policy <policy>)", for each node, joined. */
export function describeEviction(nodes: readonly EvictionState[]): string {
  return nodes.map((n) => `Redis at ${n.node} evicts keys (maxmemory-policy ${n.policy ?? "?"})`).join("; ");
}

/**
 * Throws `INVALID_CONFIG` (one line saying what to set) when a node that holds Agentry's keys
 * evicts keys. Returns the states read.
 */
export async function assertNoEviction(redis: Redis | Cluster): Promise<EvictionState[]> {
  const states = await readEvictionStates(redis);
  const evicting = evictingNodes(states);
  if (evicting.length > 0)
    throw new AgentryError(
      "INVALID_CONFIG",
      `${describeEviction(evicting)}: Agentry's locks, budget ledger and audit chain must never be evicted; ` +
        `set maxmemory-policy noeviction (as infra/redis/redis.conf does)`,
      { details: { nodes: evicting.map((n) => ({ node: n.node, policy: n.policy })) } },
    );
  return states;
}

/**
 * How many replicas each master that holds Agentry's keys has connected now (`INFO replication`):
 * the server, or every master of a Redis Cluster. A master that cannot be read comes with
 * `replicas` undefined and the reason.
 */
export async function readReplicaCounts(
  redis: Redis | Cluster,
  options: { timeoutMs?: number } = {},
): Promise<{ node: string; replicas: number | undefined; unreachable?: string }[]> {
  const timeoutMs = options.timeoutMs ?? EVICTION_READ_TIMEOUT_MS;
  const nodes = await mastersOf(redis, timeoutMs);
  return Promise.all(
    nodes.map(async ({ name, conn }) => {
      if (!conn) return { node: name, replicas: undefined, unreachable: "no connection" };
      try {
        const info = await withTimeout(conn.info("replication"), timeoutMs, "INFO");
        const count = infoField(info, "connected_slaves");
        return { node: name, replicas: count === undefined ? undefined : Number(count) };
      } catch (err) {
        return {
          node: name,
          replicas: undefined,
          unreachable: err instanceof Error ? err.message : String(err),
        };
      }
    }),
  );
}

function infoField(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*?)\\s*$`, "m").exec(info)?.[1];
}
