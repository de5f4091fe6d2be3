import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

/** A Lua script registered on a client with `defineCommand` (EVALSHA with automatic reload). */
export type ScriptCaller = (redis: Redis, keys: string[], args: (string | number)[]) => Promise<unknown>;

/**
 * Loads a Lua file that sits beside the calling module and returns a caller that registers
 * it once per client (`redis.defineCommand`) and runs it. ioredis falls back from EVALSHA
 * to EVAL when the script cache was flushed.
 */
export function luaScript(name: string, url: URL): ScriptCaller {
  const lua = readFileSync(url, "utf8");
  const command = `agentry_${name}`;
  return async (redis, keys, args) => {
    const table = redis as unknown as Record<string, unknown>;
    // No fixed numberOfKeys: a script may declare a different number of keys per call (the
    // audit append declares one key per deduplicated entry), so the count goes first.
    if (typeof table[command] !== "function") redis.defineCommand(command, { lua });
    const fn = table[command] as (...a: (string | number)[]) => Promise<unknown>;
    return fn.call(redis, keys.length, ...keys, ...args);
  };
}
