/**
 * A write condition checked inside Redis: the write happens only while `key` still holds
 * `token`. An attempt of a task is fenced by its BullMQ job lock (`<prefix>:<queue>:<jobId>:lock`
 * holding the attempt's lock token): once the lock has lapsed and another worker took the job,
 * every write of the stale attempt is refused in the same script as the write, so two attempts
 * can never both commit.
 */
export interface Fence {
  /** The key whose value must equal `token`. Must hash to the same slot as the guarded keys. */
  readonly key: string;
  readonly token: string;
}

/**
 * Lua lines that return `err` from the calling script unless `KEYS[k]` holds `ARGV[a]`, for
 * scripts that take an optional fence: an empty token means "not fenced". Paste at the top.
 */
export function fenceGuardLua(keyIndex: number, argIndex: number, err = "-1"): string {
  return `if ARGV[${argIndex}] ~= "" and redis.call("GET", KEYS[${keyIndex}]) ~= ARGV[${argIndex}] then return ${err} end`;
}

/** The KEYS/ARGV pair a fenced script takes for an optional fence (a dummy key and "" when unfenced). */
export function fenceArgs(fence: Fence | undefined, fallbackKey: string): { key: string; token: string } {
  return fence ? { key: fence.key, token: fence.token } : { key: fallbackKey, token: "" };
}
