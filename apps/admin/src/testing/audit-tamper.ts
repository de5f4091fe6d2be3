import type { Redis } from "ioredis";
import type { AuditLog } from "@agentry/governance";

/**
 * Internal. For test use only. Rolls a chain back by its last entry, head too, as someone with
 * Redis write access would to hide it: the links still verify, only an anchor can tell.
 */
export async function rollBackLastEntry(redis: Redis, log: AuditLog): Promise<void> {
  const [[lastId], [, prevFields]] = (await redis.xrevrange(log.streamKey, "+", "-", "COUNT", 2)) as [
    string,
    string[],
  ][] as [[string, string[]], [string, string[]]];
  await redis.xdel(log.streamKey, lastId);
  const prev = JSON.parse(prevFields[1] as string) as { seq: number; hash: string };
  await redis.hset(log.headKey, { seq: prev.seq, hash: prev.hash });
}
