import type { PolicyVerdict, Verdict } from "../policies/types.js";

/** What each audit entry type carries in `data`. */
export interface AuditDataMap {
  /** A task was submitted. */
  request: { prompt?: string; input?: unknown; idempotencyKey?: string; source?: string };
  /** What the model chose at a step. */
  decision: { step: number; text?: string; toolUses?: { id: string; name: string; input: unknown }[]; stopReason?: string };
  /** A tool call and its outcome. */
  action: {
    tool: string;
    toolUseId?: string;
    input: unknown;
    outcome: "ok" | "error" | "denied" | "rejected" | "expired" | "skipped";
    output?: unknown;
    error?: string;
    durationMs?: number;
  };
  /** The safety validator's merged verdict for a tool call. */
  policy_verdict: { tool: string; toolUseId?: string; input?: unknown; verdict: Verdict; decidedBy?: string; verdicts: PolicyVerdict[] };
  approval_requested: { approvalId: string; tool: string; toolUseId?: string; approvers: string[]; quorum: number; expiresAt: number; reason: string };
  approval_decided: {
    approvalId: string;
    status: "approved" | "rejected";
    decisions: { approver: string; outcome: "approve" | "reject"; reason: string; decidedAt: number }[];
  };
  /** One approver's accepted decision (the approval may still be pending). */
  approval_vote: { approvalId: string; approver: string; outcome: "approve" | "reject"; reason: string; decidedAt: number; approvals: number; quorum?: number };
  approval_expired: { approvalId: string; expiresAt?: number };
  /** The approval's task was cancelled while it waited: the approval no longer counts. */
  approval_cancelled: { approvalId: string; reason: string };
  /** A decision that was refused (bad signature, not an approver, replay, expired, already decided). */
  approval_refused: { approvalId: string; approver?: string; reason: string };
  /** Budget ledger events (reservation refused, settled, lease expired...). */
  budget: { event: string; scope?: string; tokens?: number; costMicroUsd?: number; [key: string]: unknown };
  /** The final answer of a task. */
  response: { text?: string; stopReason?: string; steps?: number; usage?: Record<string, number> };
  /** A task or step failure, with its typed code. */
  failure: { code: string; message: string; retryable?: boolean; step?: number };
}

/** Every audit entry type. */
export type AuditEntryType = keyof AuditDataMap;

/** The list of {@link AuditEntryType}s. */
export const AUDIT_ENTRY_TYPES = [
  "request",
  "decision",
  "action",
  "policy_verdict",
  "approval_requested",
  "approval_decided",
  "approval_vote",
  "approval_expired",
  "approval_cancelled",
  "approval_refused",
  "budget",
  "response",
  "failure",
] as const satisfies readonly AuditEntryType[];

/** Who and where, common to every entry. */
export interface AuditContext {
  /** ISO-8601 time. @defaultValue now, when appended */
  ts?: string;
  taskId?: string;
  sessionId?: string;
  userId?: string;
  tenant?: string;
  traceId?: string;
  /** Which process wrote it (e.g. `worker-3`). */
  actor?: string;
}

/** What a caller appends: a discriminated union on `type`. */
export type AuditEntryInput = { [T in AuditEntryType]: AuditContext & { type: T; data: AuditDataMap[T] } }[AuditEntryType];

/** An entry as stored: the input (redacted) plus its place in the chain. */
export type AuditEntry = AuditEntryInput & {
  ts: string;
  /** 1, 2, 3... with no gaps. */
  seq: number;
  /** The previous entry's `hash` ({@link GENESIS_HASH} for the first). */
  prevHash: string;
  /**
   * The link: HMAC-SHA256 (hex) with the audit key `kid` names, or plain SHA-256 (hex) when the
   * writer had no key, over the canonical JSON of this entry without `hash`.
   */
  hash: string;
  /** Which audit key authenticated this entry; absent on unauthenticated (plain SHA-256) entries. */
  kid?: string;
};

/** The `prevHash` of entry 1. */
export const GENESIS_HASH = "0".repeat(64);
