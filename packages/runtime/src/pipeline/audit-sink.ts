/**
 * Where the runtime writes its audit entries. The governance package's hash-chained audit log
 * satisfies it; the runtime does not depend on governance. An append that fails must throw:
 * the step then fails (nothing acts unaudited).
 */
export interface AuditSink {
  append(entry: RuntimeAuditEntry): Promise<unknown>;
}

/** Audit entries the runtime writes (the governance package writes policy and approval entries). */
export interface RuntimeAuditEntry {
  type: "request" | "decision" | "budget" | "response" | "failure";
  taskId: string;
  sessionId: string;
  userId: string;
  tenant: string;
  traceId?: string;
  data: Record<string, unknown>;
}
