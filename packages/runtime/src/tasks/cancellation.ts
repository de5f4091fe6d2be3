import { keySpace } from "@agentry/core";

/** Key set when a task is cancelled, checked by the worker between steps. */
export function cancelKey(prefix: string, taskId: string): string {
  return keySpace(prefix).key("cancel", taskId);
}

/** Pub/sub channel on which cancellations of running tasks are announced. */
export function cancelChannel(prefix: string): string {
  return keySpace(prefix).key("cancel-events");
}

/** Flag set by a wake-up (promote) so a task that parks right after it is woken anyway. */
export function wakeKey(prefix: string, taskId: string): string {
  return keySpace(prefix).key("wake", taskId);
}
