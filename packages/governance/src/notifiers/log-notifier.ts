import type { Logger } from "@agentry/core";
import type { ApprovalRequestedEvent, Notifier } from "./notifier.js";

/** Writes each approval request to the log (info level, `event: "approval-requested"`). */
export class LogNotifier implements Notifier {
  constructor(private readonly logger: Pick<Logger, "info">) {}

  notify(event: ApprovalRequestedEvent): Promise<void> {
    this.logger.info(
      {
        event: event.type,
        approvalId: event.approvalId,
        taskId: event.taskId,
        tool: event.tool,
        approvers: event.approvers,
        quorum: event.quorum,
        expiresAt: new Date(event.expiresAt).toISOString(),
        reason: event.reason,
      },
      `approval ${event.approvalId} requested for ${event.tool}: agentry approvals approve ${event.approvalId} --as <approver>`,
    );
    return Promise.resolve();
  }
}
