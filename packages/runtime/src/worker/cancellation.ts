/** Key set when a task is cancelled, checked by the worker between steps. */
export function cancelKey(prefix: string, taskId: string): string {
  return `${prefix}:cancel:${taskId}`;
}

/** Pub/sub channel on which cancellations of running tasks are announced. */
export function cancelChannel(prefix: string): string {
  return `${prefix}:cancel-events`;
}
