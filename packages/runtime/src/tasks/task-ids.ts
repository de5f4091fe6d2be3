import { createHash } from "node:crypto";
import { newId } from "@agentry/core";

/**
 * A task id. With an idempotency key it is derived from (tenant, key), so the same key always
 * maps to the same BullMQ job id and a second submit finds the first task instead of adding one.
 */
export function taskIdFor(tenant: string, idempotencyKey?: string): string {
  if (!idempotencyKey) return newId("task");
  const digest = createHash("sha256").update(`${tenant}\u0000${idempotencyKey}`).digest("hex");
  return `task_${digest.slice(0, 32)}`;
}
