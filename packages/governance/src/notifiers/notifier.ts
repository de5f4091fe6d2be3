/** Sent to approvers when an approval is requested. */
export interface ApprovalRequestedEvent {
  type: "approval-requested";
  approvalId: string;
  taskId: string;
  jobId?: string;
  tenant: string;
  userId: string;
  tool: string;
  input: unknown;
  approvers: string[];
  quorum: number;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  reason: string;
}

/**
 * Tells approvers that a decision is waiting. Delivery is best effort from the caller's point of
 * view: the approval exists in Redis whatever happens here, and `agentry approvals list` shows it.
 */
export interface Notifier {
  notify(event: ApprovalRequestedEvent): Promise<void>;
}
