import { canonicalJson } from "../canonical-json.js";

/**
 * How an entry sits in its chain's stream. Written now: field `e`, the entry's canonical JSON
 * without `seq`, `prevHash` and `hash`, and field `h`, its hash. The seq is the stream id's and
 * the prevHash the previous entry's hash, so neither is stored (or sent to Redis) twice; both are
 * still covered by the link, which is computed over the whole entry. Entries written before
 * carry the whole entry in `e` and no `h`; both forms read the same.
 */
export function storedField(fields: readonly string[], name: "e" | "h"): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/** The hash a stored entry carries (undefined when it has none it can be read from). */
export function storedHash(fields: readonly string[]): string | undefined {
  const h = storedField(fields, "h");
  if (h !== undefined) return h;
  try {
    const hash = (JSON.parse(storedField(fields, "e") ?? "") as { hash?: unknown }).hash;
    return typeof hash === "string" ? hash : undefined;
  } catch {
    return undefined;
  }
}

/** The seq of stream id `<seq>-<n>`. */
export function idSeq(id: string): number {
  return Number(id.slice(0, id.indexOf("-")));
}

/**
 * The whole entry as hashed, with its hash (an export line), from a stored entry at stream id
 * `id` whose predecessor's hash is `prevHash`. A stored entry that is not an object comes back
 * as stored, for the verifier to name it malformed.
 */
export function expandStored(id: string, fields: readonly string[], prevHash: string): string {
  const e = storedField(fields, "e") ?? "";
  const h = storedField(fields, "h");
  if (h === undefined) return e;
  let body: unknown;
  try {
    body = JSON.parse(e);
  } catch {
    return e;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return e;
  return canonicalJson({ ...body, seq: idSeq(id), prevHash, hash: h });
}
