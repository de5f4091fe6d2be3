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

/** @defaultValue prefix `agentry` */
export function keySpace(prefix = "agentry"): KeySpace {
  if (prefix.length === 0 || prefix.endsWith(":")) {
    throw new Error(`Key prefix must be non-empty and must not end with ':' (got "${prefix}")`);
  }
  return {
    prefix,
    key: (...parts) => [prefix, ...parts].join(":"),
  };
}
