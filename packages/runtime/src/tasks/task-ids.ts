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

// Every id Agentry makes is a kind, an underscore and 32 lowercase hex digits (newId's UUID
// without dashes, or taskIdFor's digest). BullMQ keeps its own keys under the same prefix
// (`<prefix>:tasks:completed`, `:id`, `:events`, `:meta`, `:wait`...), so a lookup by a
// caller-supplied id must check the shape first: `completed` is a sorted set, not a job.
const TASK_ID = /^task_[0-9a-f]{32}$/;
const GROUP_ID = /^group_[0-9a-f]{32}$/;

/** True when `id` has the shape of a task id (`task_` + 32 hex digits). Anything else names no task. */
export function isTaskId(id: unknown): id is string {
  return typeof id === "string" && TASK_ID.test(id);
}

/** True when `id` has the shape of a fan-out group id (`group_` + 32 hex digits). */
export function isGroupId(id: unknown): id is string {
  return typeof id === "string" && GROUP_ID.test(id);
}
