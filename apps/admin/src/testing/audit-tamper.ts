import type { Redis } from "ioredis";
import type { AuditLog } from "@agentry/governance";

/**
 * Internal. For test use only. Rolls a chain back by its last entry, head too, as someone with
 * Redis write access would to hide it: the links still verify, only an anchor can tell.
 */
export async function rollBackLastEntry(redis: Redis, log: AuditLog): Promise<void> {
  const [prev, last] = await log.tail(2);
  if (!prev || !last) throw new Error(`${log.streamKey} holds fewer than two entries`);
  await redis.xdel(log.streamKey, `${last.seq}-0`);
  await redis.hset(log.headKey, { seq: prev.seq, hash: prev.hash });
}
