import type { ApprovalRequest } from "./approvals/approval-store.js";
import { parseApproversFile } from "./approvals/approvers-file.js";
import { generateApproverKeyPair, signDecision, type ApproverKeys } from "./approvals/signing.js";
import type { DecisionOutcome, SignedDecision } from "./approvals/types.js";
import type { ApprovalRequestedEvent, Notifier } from "./notifiers/notifier.js";

/** A notifier that keeps every event, for tests. */
export class RecordingNotifier implements Notifier {
  readonly events: ApprovalRequestedEvent[] = [];
  notify(event: ApprovalRequestedEvent): Promise<void> {
    this.events.push(event);
    return Promise.resolve();
  }
}

/** Enrolled test approvers: fresh key pairs, the approvers file text, and a signer. */
export interface TestApprovers {
  keys: ApproverKeys;
  /** `<name>: <public key>` lines, as `AGENTRY_APPROVERS_FILE` holds them. */
  fileText: string;
  privateKeys: Record<string, string>;
  /** Signs a decision as `approver` (decidedAt defaults to now). */
  sign(
    approver: string,
    approvalId: string,
    outcome: DecisionOutcome,
    options?: { reason?: string; decidedAt?: number },
  ): SignedDecision;
}

/** Makes key pairs for the named approvers. */
export function createTestApprovers(names: string[]): TestApprovers {
  const privateKeys: Record<string, string> = {};
  const lines: string[] = [];
  for (const name of names) {
    const pair = generateApproverKeyPair();
    privateKeys[name] = pair.privateKey;
    lines.push(`${name}: ${pair.publicKey}`);
  }
  const fileText = `${lines.join("\n")}\n`;
  return {
    keys: parseApproversFile(fileText),
    fileText,
    privateKeys,
    sign(approver, approvalId, outcome, options = {}) {
      const key = privateKeys[approver];
      if (!key) throw new Error(`no test key for ${approver}`);
      return signDecision(key, {
        approvalId,
        approver,
        outcome,
        decidedAt: options.decidedAt ?? Date.now(),
        ...(options.reason === undefined ? {} : { reason: options.reason }),
      });
    },
  };
}

/** An approval request for deleting a staging database in task `taskId` (acme, u1, s1). */
export function testApprovalRequest(
  taskId: string,
  overrides: Partial<ApprovalRequest> = {},
): ApprovalRequest {
  return {
    taskId,
    toolUseId: "toolu_1",
    action: {
      tool: "delete_resource",
      input: { resource: "db", env: "staging" },
      taskId,
      tenant: "acme",
      userId: "u1",
      sessionId: "s1",
    },
    approvers: ["alice", "bob"],
    quorum: 1,
    ttlMs: 60_000,
    reason: "deletes need approval",
    ...overrides,
  };
}
