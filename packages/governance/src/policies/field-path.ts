import { canonicalName } from "./normalise.js";

/**
 * Every value a dotted path (`a.b.0.c`) may name in a value. Keys match in canonical form
 * ({@link canonicalName}: `Env`, `ENV` and `ｅｎｖ` are all `env`), so one input can hold several
 * candidates; a rule holds when any of them matches, the safe side for a deny or an approval.
 * A numeric segment indexes an array; any other segment reaching an array looks inside each
 * element (`targets.env` reads `targets[*].env`). Empty when nothing matches.
 */
export function getFields(value: unknown, path: string): unknown[] {
  let current: unknown[] = [value];
  for (const segment of path.split(".")) {
    const want = canonicalName(segment);
    const index = /^\d+$/.test(segment) ? Number(segment) : undefined;
    const next: unknown[] = [];
    const step = (node: unknown, inArray: boolean): void => {
      if (node === null || typeof node !== "object") return;
      if (Array.isArray(node)) {
        if (index !== undefined && !inArray) {
          if (index < node.length) next.push(node[index]);
        } else if (!inArray) {
          for (const item of node) step(item, true);
        }
        return;
      }
      for (const [key, child] of Object.entries(node)) {
        if (canonicalName(key) === want) next.push(child);
      }
    };
    for (const node of current) step(node, false);
    current = next;
  }
  return current;
}
