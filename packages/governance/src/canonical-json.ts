import { AgentryError } from "@agentry/core";

/**
 * Canonical JSON: object keys sorted by their UTF-16 code units (JavaScript's default string
 * order; a key with a character outside the Basic Multilingual Plane sorts by its surrogate
 * pair, not by its code point), no whitespace, `undefined` members dropped (as JSON.stringify
 * does). Two equal values always encode to the same bytes, which is what a hash
 * chain and a signature need.
 *
 * Throws `INVALID_INPUT` on values JSON cannot represent faithfully (non-finite numbers, bigint,
 * functions).
 */
export function canonicalJson(value: unknown): string {
  return encode(value, "$");
}

function encode(value: unknown, path: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value))
        throw new AgentryError("INVALID_INPUT", `canonicalJson: non-finite number at ${path}`);
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        return `[${value.map((v, i) => (v === undefined ? "null" : encode(v, `${path}[${i}]`))).join(",")}]`;
      }
      const maybeJson = value as { toJSON?: () => unknown };
      if (typeof maybeJson.toJSON === "function") return encode(maybeJson.toJSON(), path);
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((k) => record[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${encode(record[k], `${path}.${k}`)}`).join(",")}}`;
    }
    default:
      throw new AgentryError("INVALID_INPUT", `canonicalJson: cannot encode ${typeof value} at ${path}`);
  }
}

/**
 * The members of a plain object (undefined ones dropped), each value already in canonical JSON,
 * so more members can be added later and the whole joined with {@link joinCanonicalMembers}
 * without encoding the values again. Throws as {@link canonicalJson} does.
 */
export function canonicalMembers(record: Record<string, unknown>): Map<string, string> {
  const members = new Map<string, string>();
  for (const key of Object.keys(record)) {
    if (record[key] !== undefined) members.set(key, encode(record[key], `$.${key}`));
  }
  return members;
}

/** `canonicalJson` of the object whose members (already encoded) these are. */
export function joinCanonicalMembers(members: ReadonlyMap<string, string>): string {
  const keys = [...members.keys()].sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${members.get(k) as string}`).join(",")}}`;
}
