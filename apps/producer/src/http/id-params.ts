import { AgentryError } from "@agentry/core";
import { isGroupId, isTaskId } from "@agentry/runtime";

/**
 * The `:id` of a task route. An id that is not shaped like a task id answers 404 before anything
 * is read: it could name one of BullMQ's own keys under the same prefix (`completed`, `id`,
 * `events`, `meta`...), which would otherwise surface as a 500 (WRONGTYPE) or leak queue state.
 */
export function taskIdParam(id: string): string {
  if (!isTaskId(id)) throw new AgentryError("NOT_FOUND", `No task ${id}`);
  return id;
}

/** The `:id` of a group route; anything not shaped like a group id answers 404 unread. */
export function groupIdParam(id: string): string {
  if (!isGroupId(id)) throw new AgentryError("NOT_FOUND", `No group ${id}`);
  return id;
}
