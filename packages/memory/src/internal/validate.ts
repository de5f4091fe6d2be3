import { AgentryError } from "@agentry/core";

/** Throws INVALID_INPUT unless `value` is a non-empty string. */
export function requireId(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new AgentryError("INVALID_INPUT", `${what} must be a non-empty string`, {
      details: { field: what, got: typeof value },
    });
  }
  return value;
}

/**
 * Makes any user string safe inside a Redis key: ':' cannot split it into more parts and
 * '{' / '}' cannot turn it into a Cluster hash tag.
 */
export function keyPart(value: string): string {
  return encodeURIComponent(value);
}
