import { canonicalJson } from "../canonical-json.js";
import { expandStored, storedHash } from "./stored.js";

// Internal. For test use only: reading a chain's raw stream as whole entries, and writing whole
// entries back in the stored form, as someone with Redis write access would.

/**
 * Expands stored entries in stream order, each linked to the one before; `before` is the hash
 * of the entry preceding the first (see {@link expandStored}).
 */
export function expandRun(run: readonly [string, string[]][], before: string): string[] {
  let prev = before;
  return run.map(([id, fields]) => {
    const line = expandStored(id, fields, prev);
    prev = storedHash(fields) ?? "";
    return line;
  });
}

/**
 * The stored fields of a whole entry line (the inverse of {@link expandStored}); a line that is
 * not an entry is stored as it is, in `e`.
 */
export function storedFieldsOf(line: string): string[] {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return ["e", line];
  }
  if (typeof entry !== "object" || entry === null || typeof (entry as { hash?: unknown }).hash !== "string")
    return ["e", line];
  const { seq: _seq, prevHash: _prevHash, hash, ...rest } = entry as Record<string, unknown>;
  return ["e", canonicalJson(rest), "h", hash as string];
}
