import type { Fence } from "@agentry/core";

/**
 * Where the runtime writes its audit entries. The governance package's hash-chained audit log
 * satisfies it; the runtime does not depend on governance. An append that fails must throw:
 * the step then fails (nothing acts unaudited).
 */
export interface AuditSink {
  append(entry: RuntimeAuditEntry, options?: AuditAppendOptions): Promise<unknown>;
}

/** Conditions of one append, checked inside Redis in the same script as the write. */
export interface AuditAppendOptions {
  /** Append only while the fence holds (the attempt still owns its job lock); else `LOCK_LOST`. */
  fence?: Fence;
  /** Append at most once per key (e.g. `response:<taskId>`): a second append is skipped. */
  once?: string;
}

/** Audit entries the runtime writes (the governance package writes policy and approval entries). */
export interface RuntimeAuditEntry {
  type: "request" | "decision" | "budget" | "response" | "failure";
  taskId: string;
  sessionId: string;
  userId: string;
  tenant: string;
  traceId?: string;
  /** Which process wrote it (the worker's name). */
  actor?: string;
  data: Record<string, unknown>;
}
