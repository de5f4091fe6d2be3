import { createHash } from "node:crypto";
import { AgentryError } from "../errors/agentry-error.js";
import { keySpace } from "./keys.js";

/** The number of hash slots of a Redis Cluster. */
export const CLUSTER_SLOTS = 16_384;

/** The most queue shards a deployment may have (`AGENTRY_SHARDS`). */
export const MAX_SHARDS = 256;

/** The most audit lanes each audit chain may have (`AGENTRY_AUDIT_LANES`). */
export const MAX_AUDIT_LANES = 64;

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster maps keys to slots with. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/**
 * The hash tag of a key or prefix as Redis Cluster reads it: the text between the first `{` and
 * the first `}` after it, when not empty. `undefined`: the whole key is hashed.
 */
export function hashTagOf(key: string): string | undefined {
  const open = key.indexOf("{");
  if (open < 0) return undefined;
  const close = key.indexOf("}", open + 1);
  if (close < 0 || close === open + 1) return undefined;
  return key.slice(open + 1, close);
}

/** The Redis Cluster slot of a key (what `CLUSTER KEYSLOT` answers). */
export function clusterSlot(key: string): number {
  return crc16(Buffer.from(hashTagOf(key) ?? key, "utf8")) % CLUSTER_SLOTS;
}

/** Throws `INVALID_CONFIG` unless `shards` is a whole number from 1 to {@link MAX_SHARDS}. */
function checkShardCount(shards: number): void {
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS)
    throw new AgentryError(
      "INVALID_CONFIG",
      `AGENTRY_SHARDS must be a whole number from 1 to ${MAX_SHARDS} (got ${shards})`,
    );
}

/**
 * The key prefix of queue shard `shard` of `shards`, derived from the base prefix
 * (`AGENTRY_PREFIX`). This is the one place a shard's hash tag is chosen.
 *
 * - One shard: the base prefix itself, so a deployment that never set `AGENTRY_SHARDS` keeps
 *   every key where it always was.
 * - A base with a hash tag (`{agentry}`, required on Redis Cluster): the tag becomes
 *   `{agentry-s<shard>-<k>}`, where `k` is the smallest number from 0 whose tag hashes into the
 *   middle half of the shard's range of slots, `[shard × 16384 / shards, (shard + 1) × 16384 /
 *   shards)`. The ranges are the even split `redis-cli --cluster create` gives N masters, so with
 *   as many masters as shards each shard lands on its own master (with more masters, on
 *   different ones); the middle half keeps that true when a split is a few slots off.
 * - A base without a tag (one Redis server): `<base>:s<shard>`.
 *
 * Shards other than the base never share a prefix with the base, which keeps the global keys
 * (budgets, tenant settings) on a slot of their own.
 */
export function shardPrefix(base: string, shard: number, shards: number): string {
  checkShardCount(shards);
  if (!Number.isInteger(shard) || shard < 0 || shard >= shards)
    throw new AgentryError("INVALID_CONFIG", `shard ${shard} is not one of 0..${shards - 1}`);
  if (shards === 1) return base;
  const tag = hashTagOf(base);
  if (tag === undefined) return `${base}:s${shard}`;
  const width = CLUSTER_SLOTS / shards;
  const low = Math.floor(shard * width + width / 4);
  const high = Math.ceil((shard + 1) * width - width / 4);
  for (let k = 0; ; k++) {
    const candidate = `${tag}-s${shard}-${k}`;
    const slot = clusterSlot(candidate);
    if (slot >= low && slot < high) return base.replace(`{${tag}}`, `{${candidate}}`);
  }
}

/** Every shard's prefix, shard 0 first (see {@link shardPrefix}). */
export function shardPrefixes(base: string, shards: number): string[] {
  checkShardCount(shards);
  return Array.from({ length: shards }, (_, i) => shardPrefix(base, i, shards));
}

/**
 * The shard a session's tasks go to: the first four bytes of SHA-256(`tenant \0 session`)
 * modulo the shard count. Every task of a session lands on one shard, so its order, turns and
 * history stay on one slot. Changing the shard count moves sessions to other shards.
 */
export function shardOfSession(tenant: string, sessionId: string, shards: number): number {
  checkShardCount(shards);
  if (shards === 1) return 0;
  return createHash("sha256").update(`${tenant}\0${sessionId}`).digest().readUInt32BE(0) % shards;
}

/**
 * Parses a worker's shard list (`AGENTRY_WORKER_SHARDS`, e.g. `0,2`): unset or blank means every
 * shard. Throws `INVALID_CONFIG` naming the variable for anything that is not a list of distinct
 * shard numbers below `shards`.
 */
export function parseShardList(value: string | undefined, shards: number): number[] {
  checkShardCount(shards);
  if (value === undefined || value.trim() === "") return Array.from({ length: shards }, (_, i) => i);
  const parts = value.split(",").map((p) => p.trim());
  const list: number[] = [];
  for (const part of parts) {
    const n = /^\d+$/.test(part) ? Number(part) : Number.NaN;
    if (!Number.isInteger(n) || n >= shards)
      throw new AgentryError(
        "INVALID_CONFIG",
        `AGENTRY_WORKER_SHARDS: "${part}" is not a shard of 0..${shards - 1} (AGENTRY_SHARDS=${shards})`,
      );
    if (list.includes(n))
      throw new AgentryError("INVALID_CONFIG", `AGENTRY_WORKER_SHARDS: shard ${n} is listed twice`);
    list.push(n);
  }
  return list.sort((a, b) => a - b);
}

/**
 * Splits a process's concurrency between its shards' workers: `total / count` each, the
 * remainder one more to the first shards, and at least 1 each (so a process consuming more
 * shards than its concurrency runs one job per shard).
 */
export function splitConcurrency(total: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) =>
    Math.max(1, Math.floor(total / count) + (i < total % count ? 1 : 0)),
  );
}

/**
 * Refuses, before any job is taken or submitted, a Redis Cluster the prefix does not fit: a
 * cluster node reached through a single-server URL (`redis://`; every multi-key command would
 * be redirected or refused), and a cluster prefix without a hash tag (every multi-key script
 * fails with `CROSSSLOT`). Throws `INVALID_CONFIG` with one line saying what to set.
 */
export async function checkClusterConfig(
  redis: { info(section: string): Promise<string>; isCluster?: boolean },
  prefix: string,
): Promise<void> {
  const cluster = redis.isCluster === true;
  if (!cluster && /^cluster_enabled:1\s*$/m.test(await redis.info("cluster")))
    throw new AgentryError(
      "INVALID_CONFIG",
      `REDIS_URL points at a Redis Cluster node through a single-server URL: set REDIS_URL=redis+cluster://host:port[,host:port...] and AGENTRY_PREFIX={${prefix.replace(/[{}]/g, "") || "agentry"}}`,
    );
  if (cluster) checkClusterPrefix(prefix);
}

/** Throws `INVALID_CONFIG` (one line saying what to set) for a Redis Cluster prefix without a hash tag. */
export function checkClusterPrefix(prefix: string): void {
  if (hashTagOf(prefix) === undefined)
    throw new AgentryError(
      "INVALID_CONFIG",
      `AGENTRY_PREFIX "${prefix}" has no hash tag, but REDIS_URL is a Redis Cluster, where every key of a script must share a slot: set AGENTRY_PREFIX={${prefix.replace(/[{}]/g, "") || "agentry"}}`,
    );
}

/** Where a deployment records its shard count: a key on the base prefix's queue family. */
export function shardCountKey(base: string): string {
  return keySpace(base).key("tasks", "shards");
}

/**
 * Every process of a deployment must split the queue the same way: a producer on 3 shards and
 * workers on 2 would leave a shard's tasks with no consumer, and a count changed without a drain
 * leaves sessions' order, history and budgets on the shards they hashed to before. The first
 * process to start records its `AGENTRY_SHARDS` ({@link shardCountKey}, SET NX); every later one
 * must match it. A deployment from before the record whose single queue lives on the base prefix
 * (BullMQ's meta hash there) counts as 1 shard. `write: false` (read-only callers such as the
 * CLI) only compares. Throws `INVALID_CONFIG` with one line saying what to set.
 */
export async function pinShardCount(
  redis: {
    get(key: string): Promise<string | null>;
    setnx(key: string, value: string): Promise<number>;
    exists(key: string): Promise<number>;
  },
  base: string,
  shards: number,
  options: { write?: boolean } = {},
): Promise<void> {
  checkShardCount(shards);
  const key = shardCountKey(base);
  let recorded = await redis.get(key);
  if (recorded === null && shards > 1 && (await redis.exists(keySpace(base).key("tasks", "meta"))) === 1)
    recorded = "1";
  if (recorded === null) {
    if (options.write === false) return;
    if ((await redis.setnx(key, String(shards))) === 1) return;
    recorded = await redis.get(key);
  }
  if (recorded !== null && recorded !== String(shards))
    throw new AgentryError(
      "INVALID_CONFIG",
      `AGENTRY_SHARDS=${shards}, but the deployment on AGENTRY_PREFIX=${base} runs ${recorded} shard(s) (${key}): set AGENTRY_SHARDS=${recorded} on every process; to change the count, drain every queue, stop every process, then SET ${key} ${shards}`,
    );
}
