import { AgentryError } from "../errors/agentry-error.js";

/** The key prefix when none is configured (`AGENTRY_PREFIX`). */
export const DEFAULT_KEY_PREFIX = "agentry";

/**
 * Key names. Every Agentry key starts with the configured prefix, which may carry a
 * Redis Cluster hash tag (`{agentry}`) so that multi-key Lua scripts stay in one slot.
 * BullMQ gets the same prefix through its own `prefix` option, never ioredis `keyPrefix`.
 */
export interface KeySpace {
  readonly prefix: string;
  /** `${prefix}:${parts.join(":")}` */
  key(...parts: (string | number)[]): string;
}

/**
 * The key builder every Agentry key goes through. `undefined` means {@link DEFAULT_KEY_PREFIX}.
 * Throws `INVALID_CONFIG` for an empty prefix or one that ends with `:`.
 */
export function keySpace(prefix: string = DEFAULT_KEY_PREFIX): KeySpace {
  if (prefix.length === 0 || prefix.endsWith(":")) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `Key prefix must be non-empty and must not end with ':' (got "${prefix}")`,
    );
  }
  return {
    prefix,
    key: (...parts) => [prefix, ...parts].join(":"),
  };
}
