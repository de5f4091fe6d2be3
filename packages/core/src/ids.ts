import { randomBytes, randomUUID } from "node:crypto";

/** A random id with a readable type prefix, e.g. `task_4f1c…`. */
export function newId(kind: string): string {
  return `${kind}_${randomUUID().replaceAll("-", "")}`;
}

/** A short random token for lease ownership. */
export function newToken(): string {
  return randomBytes(12).toString("hex");
}
