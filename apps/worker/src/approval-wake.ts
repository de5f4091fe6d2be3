import type { ApprovalStore } from "@agentry/governance";
import type { Reconciler, WakeSource } from "@agentry/runtime";

/** Wakes the task of every approval decision announced on pub/sub. */
export function approvalDecisions(approvals: ApprovalStore): WakeSource {
  return (wake) => approvals.subscribe((event) => wake(event.taskId));
}

/**
 * The approvals' reconcile pass: decisions whose pub/sub event was missed (e.g. made while every
 * worker was down) and approvals that ran out wake their tasks; pending approvals whose task is
 * gone (cancelled while no worker heard it) are cancelled.
 */
export function reconcileApprovals(approvals: ApprovalStore): Reconciler {
  return async (worker) => {
    for (const id of await approvals.expireDue()) {
      const record = await approvals.get(id);
      if (record?.taskId) await worker.promote(record.taskId);
    }
    for (const record of await approvals.unacknowledgedResolved()) {
      if (record.taskId) await worker.promote(record.taskId);
    }
    const pending = await approvals.pendingTasks();
    const gone = new Set(await worker.missingTasks(pending.map((r) => r.taskId)));
    for (const record of pending)
      if (gone.has(record.taskId)) await approvals.cancel(record.id, "the task no longer exists");
  };
}
