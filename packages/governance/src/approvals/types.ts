import type { Action } from "../policies/types.js";

/** Where an approval stands. `pending` is the only state that accepts decisions. */
export type ApprovalStatus = "pending" | "approved" | "rejected" | "expired" | "cancelled";

/** What an approver says. */
export type DecisionOutcome = "approve" | "reject";

/** A decision as signed by an approver (see `signDecision`). */
export interface SignedDecision {
  approvalId: string;
  approver: string;
  outcome: DecisionOutcome;
  /** Milliseconds since the epoch, part of the signed payload. */
  decidedAt: number;
  /** Free text; not part of the signed payload. */
  reason?: string;
  /** Base64 Ed25519 signature over `decisionPayload(...)`. */
  signature: string;
}

/** A decision as stored on the approval. */
export interface ApprovalDecision {
  approver: string;
  outcome: DecisionOutcome;
  reason: string;
  decidedAt: number;
  signature: string;
}

/** An approval record as kept in Redis (`{prefix}:approval:{id}`). */
export interface ApprovalRecord {
  id: string;
  taskId: string;
  jobId?: string;
  toolUseId: string;
  action: Action;
  /** Who may decide; `"*"` means any enrolled approver. */
  approvers: string[];
  quorum: number;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  status: ApprovalStatus;
  decisions: ApprovalDecision[];
  createdAt: number;
  reason: string;
  /** When the approval left `pending`. */
  resolvedAt?: number;
  /** When the resumed task consumed the resolution (see `ApprovalStore.acknowledge`). */
  acknowledgedAt?: number;
}

/** The pub/sub event announced when an approval is resolved. */
export interface ApprovalResolvedEvent {
  approvalId: string;
  taskId: string;
  jobId?: string;
  status: Exclude<ApprovalStatus, "pending" | "cancelled">;
}

/** What `ApprovalStore.tryDecide` reports. Only `decided` and `recorded` changed the record. */
export type DecideResult =
  /** This decision resolved the approval. */
  | { type: "decided"; status: "approved" | "rejected"; approvals: number; record: ApprovalRecord }
  /** Counted; the quorum is not reached yet. */
  | { type: "recorded"; approvals: number; quorum: number; record: ApprovalRecord }
  | { type: "not-approver"; approver: string }
  | { type: "bad-signature"; approver: string }
  /** This approver already decided, or the approval is no longer pending. */
  | { type: "already-decided"; status: ApprovalStatus; byApprover: boolean }
  | { type: "expired" }
  | { type: "unknown" };
