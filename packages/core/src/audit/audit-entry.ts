import type { ChainableCommander } from "ioredis";
import type { Fence } from "../redis/fence.js";
import type { ScriptClient } from "../redis/scripts.js";

/** A safety policy's answer for one action. */
export type Verdict =
  | { type: "allow" }
  | { type: "deny"; reason: string }
  | { type: "require_approval"; approvers: string[]; quorum: number; ttlMs: number; reason: string };

/** One policy's contribution to a tool call's merged verdict. */
export interface PolicyVerdict {
  policy: string;
  verdict: Verdict;
  /** Set when the policy threw or timed out (its verdict is then a deny). */
  error?: string;
}

/** Token usage of a model call as the audit records it. */
export interface AuditUsage {
  input: number;
  output: number;
  cacheCreationInput?: number;
  cacheReadInput?: number;
}

/** What each audit entry type carries in `data`. */
export interface AuditDataMap {
  /** A task was submitted (written once per task by the worker that first runs it). */
  request: {
    prompt?: string;
    input?: unknown;
    idempotencyKey?: string;
    source?: string;
    model?: string;
    submittedAt?: number;
  };
  /** What the model chose at a step. */
  decision: {
    step: number;
    text?: string;
    toolUses?: { id: string; name: string; input: unknown }[];
    stopReason?: string;
    usage?: AuditUsage;
    model?: string;
  };
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
  policy_verdict: {
    tool: string;
    toolUseId?: string;
    input?: unknown;
    verdict: Verdict;
    decidedBy?: string;
    verdicts: PolicyVerdict[];
  };
  approval_requested: {
    approvalId: string;
    tool: string;
    toolUseId?: string;
    approvers: string[];
    quorum: number;
    expiresAt: number;
    reason: string;
  };
  approval_decided: {
    approvalId: string;
    status: "approved" | "rejected";
    decisions: { approver: string; outcome: "approve" | "reject"; reason: string; decidedAt: number }[];
  };
  /** One approver's accepted decision (the approval may still be pending). */
  approval_vote: {
    approvalId: string;
    approver: string;
    outcome: "approve" | "reject";
    reason: string;
    decidedAt: number;
    approvals: number;
    quorum?: number;
  };
  approval_expired: { approvalId: string; expiresAt?: number };
  /** The approval's task was cancelled while it waited: the approval no longer counts. */
  approval_cancelled: { approvalId: string; reason: string };
  /** A decision that was refused (bad signature, not an approver, replay, expired, already decided). */
  approval_refused: { approvalId: string; approver?: string; reason: string };
  /** Budget ledger events (reservation refused, settled, lease expired...). */
  budget: { event: string; scope?: string; tokens?: number; costMicroUsd?: number; [key: string]: unknown };
  /** The final answer of a task. */
  response: { text?: string; stopReason?: string; steps?: number; usage?: AuditUsage; costMicroUsd?: number };
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

/** An entry's type and its data, without the context: a discriminated union on `type`. */
export type AuditRecord = { [T in AuditEntryType]: { type: T; data: AuditDataMap[T] } }[AuditEntryType];

/** What a writer appends: context plus one {@link AuditRecord}. */
export type AuditEntryInput = AuditContext & AuditRecord;

/** Conditions on one append, checked inside Redis in the same step as the write. */
export interface AuditAppendOptions {
  /**
   * Write only while `fence.key` holds `fence.token` (a task attempt's lock): a stale attempt's
   * append writes nothing and throws `LOCK_LOST`. The key must share the log's hash slot.
   */
  fence?: Fence;
  /**
   * Write at most once under this id (1 to 512 characters): a retried append with the same id
   * writes nothing. Ids are global to the log: include the tenant and task in them.
   */
  once?: string;
}

/**
 * Where entries are appended: the runtime and governance write through it, and the audit log
 * (`AuditLog` in @agentry/governance) implements it. An append that fails must throw: the step
 * then fails, so nothing acts unaudited.
 */
export interface AuditSink {
  append(entry: AuditEntryInput, options?: AuditAppendOptions): Promise<unknown>;
  /**
   * Holds the appends fenced by `fence` (one task attempt's) instead of writing each at once:
   * they resolve when held, and go to Redis with the attempt's next own write, in one
   * transaction ({@link AuditHold.commit}), so a step costs one round trip. Optional: a sink
   * without it writes every append at once.
   */
  hold?(fence: Fence): AuditHold;
  /**
   * The key of a `once` marker (see {@link AuditAppendOptions.once}), so that whoever knows a
   * task is finished for good may drop its markers early instead of keeping them for their TTL.
   * Optional: without it the markers expire.
   */
  onceKey?(once: string): string;
}

/**
 * The appends one attempt holds (see {@link AuditSink.hold}). Whoever holds them must commit or
 * release them before the attempt acts on what they record (e.g. before a tool runs), since a
 * held entry is not yet written: its failure surfaces at the commit.
 */
export interface AuditHold {
  /** Entries held and not yet committed. */
  readonly size: number;
  /**
   * Writes the held entries and the rider's write in one MULTI/EXEC, retrying (entries and
   * rider together) while the chain head moves; with nothing held, runs the rider alone.
   * Throws `LOCK_LOST` when the fence no longer holds (nothing written), `AUDIT_FAILED` when the
   * entries cannot be written, or what the rider's reply throws.
   */
  commit<T>(rider: AuditRider<T>): Promise<T>;
  /** Stops holding: what is still held is appended on its own; later appends are written at once. */
  release(): Promise<void>;
}

/** A caller's own write that rides with held audit entries (see {@link AuditHold.commit}). */
export interface AuditRider<T> {
  /** Defines the rider's scripts on the client the transaction runs on; called before it is created. */
  define(client: ScriptClient): void;
  /**
   * Queues the write on `tx`, after the audit append. With `head` set, entries ride in the same
   * transaction: the write must check, inside its script, that the chain head then holds
   * `head.hash` (the entries were appended) and write nothing otherwise; the commit is retried.
   */
  queue(tx: ChainableCommander, head: { key: string; hash: string } | undefined): void;
  /** The write's result from its `[error, reply]`; throws for an error or a refusal. */
  reply(result: [Error | null, unknown]): T;
  /** Loads the rider's scripts into the server's cache, after the transaction met `NOSCRIPT`. */
  load(client: ScriptClient): Promise<void>;
}
