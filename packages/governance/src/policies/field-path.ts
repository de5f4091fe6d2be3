/**
 * Reads a dotted path (`a.b.0.c`) from a value. Returns `undefined` when any step is missing.
 * Array indexes are plain numeric segments.
 */
export function getField(value: unknown, path: string): unknown {
  let current: unknown = value;
  for (const segment of path.split(".")) {
    if (current === null || typeof current !== "object") return undefined;
    if (!Object.prototype.hasOwnProperty.call(current, segment)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}
