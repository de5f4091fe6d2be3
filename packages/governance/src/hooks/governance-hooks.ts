import type { AgentHooks, ToolCallDecision, ToolCallInfo } from "@agentry/agent";
import {
  systemClock,
  type AuditContext,
  type AuditDataMap,
  type AuditRecord,
  type Clock,
  type Logger,
} from "@agentry/core";
import { canonicalJson } from "../canonical-json.js";
import type { ApprovalStore } from "../approvals/approval-store.js";
import { verifyDecision, type ApproverKeys } from "../approvals/signing.js";
import type { ApprovalRecord } from "../approvals/types.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Notifier } from "../notifiers/notifier.js";
import { ALL_APPROVERS } from "../policies/policy-file.js";
import type { Action } from "../policies/types.js";
import type { SafetyValidator } from "../policies/validator.js";

/** Options for {@link createGovernanceHooks}. */
export interface GovernanceHooksOptions {
  validator: SafetyValidator;
  approvals: ApprovalStore;
  audit: AuditLog;
  /** Told about new approvals. A notifier failure is logged, never fatal: the approval exists in Redis. */
  notifier?: Notifier;
  /** Enrolled approvers: `"*"` in a verdict expands to all of them, and resumed decisions must verify against them. */
  approverKeys: ApproverKeys;
  /** @defaultValue the system clock */
  clock?: Clock;
  logger?: Pick<Logger, "warn">;
  /** Longest tool output kept in an `action` audit entry, in characters. @defaultValue 4096 */
  maxAuditedOutput?: number;
}

/** The `policy` named on a deny that comes from an approval (rejected, expired, invalid). */
export const APPROVAL_POLICY = "approval";

type ActionOutcome = AuditDataMap["action"]["outcome"];

/**
 * Governance as agent-loop hooks. `beforeToolCall`: builds the {@link Action} (with the
 * registry's `destructive` declaration from the loop), validates it and
 * audits the verdict; a `require_approval` creates the approval (id deterministic per task and
 * tool_use, so a retry finds the same one), notifies, and suspends with `data: {approvalId, expiresAt}`.
 * On resume it reads the approval and re-verifies every counted signature against
 * `approverKeys` (a record written straight into Redis does not pass): approved → allow,
 * rejected → deny naming who and why, expired → deny "approval expired", still pending →
 * suspend again. `afterToolCall` audits the action and its outcome. An audit failure throws
 * `AUDIT_FAILED`, failing the step.
 */
export function createGovernanceHooks(
  options: GovernanceHooksOptions,
): Required<Pick<AgentHooks, "beforeToolCall" | "afterToolCall">> {
  const { validator, approvals, audit, notifier, approverKeys, logger } = options;
  const clock = options.clock ?? systemClock;
  const maxOutput = options.maxAuditedOutput ?? 4_096;
  /** Why a call was denied, for the action entry written after it (per process; a hint only). */
  const outcomes = new Map<string, ActionOutcome>();

  const context = (info: ToolCallInfo): AuditContext => ({
    taskId: info.run.taskId,
    sessionId: info.run.sessionId,
    userId: info.run.userId,
    tenant: info.run.tenant,
    ...(info.run.attributes?.traceId ? { traceId: info.run.attributes.traceId } : {}),
  });
  // Fenced by the attempt's job lock: an attempt that lost its task writes nothing more. A
  // resolution (decided, expired) is written once per approval, however many attempts apply it.
  const write = async (info: ToolCallInfo, entry: AuditRecord, once?: string): Promise<void> => {
    await audit.append(
      { ...context(info), ...entry },
      { ...(info.run.fence ? { fence: info.run.fence } : {}), ...(once ? { once } : {}) },
    );
  };
  const deny = (info: ToolCallInfo, outcome: ActionOutcome, reason: string): ToolCallDecision => {
    outcomes.set(info.call.id, outcome);
    return { type: "deny", reason, policy: APPROVAL_POLICY };
  };

  const refuse = async (
    info: ToolCallInfo,
    approvalId: string,
    reason: string,
    approver?: string,
  ): Promise<ToolCallDecision> => {
    await write(info, {
      type: "approval_refused",
      data: { approvalId, reason, ...(approver ? { approver } : {}) },
    });
    return deny(info, "denied", `approval ${approvalId} refused: ${reason}`);
  };

  const actionOf = (info: ToolCallInfo): Action => ({
    tool: info.call.name,
    input: info.call.input,
    taskId: info.run.taskId,
    tenant: info.run.tenant,
    userId: info.run.userId,
    sessionId: info.run.sessionId,
    ...(info.run.attributes?.env ? { env: info.run.attributes.env } : {}),
    ...(info.run.attributes ? { attributes: info.run.attributes } : {}),
    ...(info.destructive === true ? { destructive: true } : {}),
  });
  /** `"*"` stands for every enrolled approver. */
  const expandApprovers = (names: string[]): string[] => [
    ...new Set(names.flatMap((a) => (a === ALL_APPROVERS ? [...approverKeys.keys()] : [a]))),
  ];

  /** Decides from an approval record; used on resume and when a retried step finds its approval. */
  const fromRecord = async (info: ToolCallInfo, approvalId: string): Promise<ToolCallDecision> => {
    let record = await approvals.get(approvalId);
    if (!record) return refuse(info, approvalId, "no such approval");
    if (record.taskId !== info.run.taskId || record.toolUseId !== info.call.id) {
      return refuse(info, approvalId, "the approval belongs to another tool call");
    }
    if (
      canonicalJson(record.action.input) !== canonicalJson(info.call.input) ||
      record.action.tool !== info.call.name
    ) {
      return refuse(info, approvalId, "the approved action differs from the tool call");
    }
    if (record.status === "pending") {
      if (clock.now() < record.expiresAt)
        return { type: "suspend", reason: record.reason, data: { approvalId, expiresAt: record.expiresAt } };
      await approvals.expire(approvalId);
      record = (await approvals.get(approvalId)) ?? record;
      if (record.status === "pending")
        return { type: "suspend", reason: record.reason, data: { approvalId, expiresAt: record.expiresAt } };
    }
    const decision = await resolved(info, record);
    await approvals.acknowledge(approvalId);
    return decision;
  };

  const resolved = async (info: ToolCallInfo, record: ApprovalRecord): Promise<ToolCallDecision> => {
    const approvalId = record.id;
    const valid = record.decisions.filter(
      (d) =>
        (record.approvers.includes(d.approver) || record.approvers.includes(ALL_APPROVERS)) &&
        verifyDecision(approverKeys, { ...d, approvalId }),
    );
    const decisions = valid.map(({ approver, outcome, reason, decidedAt }) => ({
      approver,
      outcome,
      reason,
      decidedAt,
    }));
    switch (record.status) {
      case "expired":
        await write(
          info,
          { type: "approval_expired", data: { approvalId, expiresAt: record.expiresAt } },
          `approval-resolved:${approvalId}`,
        );
        return deny(info, "expired", `approval ${approvalId} expired`);
      case "rejected": {
        await write(
          info,
          { type: "approval_decided", data: { approvalId, status: "rejected", decisions } },
          `approval-resolved:${approvalId}`,
        );
        const reject = valid.find((d) => d.outcome === "reject");
        if (!reject)
          return deny(info, "rejected", `approval ${approvalId} was rejected (no verifiable signature)`);
        return deny(
          info,
          "rejected",
          `rejected by ${reject.approver}${reject.reason ? `: ${reject.reason}` : ""}`,
        );
      }
      case "approved": {
        const approvers = new Set(valid.filter((d) => d.outcome === "approve").map((d) => d.approver));
        if (approvers.size < record.quorum) {
          const bad = record.decisions.find((d) => !valid.includes(d));
          return refuse(
            info,
            approvalId,
            `only ${approvers.size} of ${record.quorum} approvals carry a valid signature`,
            bad?.approver,
          );
        }
        // The record's approvers and quorum live in Redis; the bar is derived again from the
        // policies this worker loaded, so a record edited to ask for less does not pass.
        const bar = (await validator.validate(actionOf(info), { recheck: true })).verdict;
        if (bar.type === "deny") {
          outcomes.set(info.call.id, "denied");
          return { type: "deny", reason: bar.reason };
        }
        if (bar.type === "require_approval") {
          const allowed = new Set(expandApprovers(bar.approvers));
          const counted = [...approvers].filter((a) => allowed.has(a)).length;
          const quorum = Math.max(bar.quorum, record.quorum);
          if (counted < quorum) {
            return refuse(
              info,
              approvalId,
              `only ${counted} of the ${quorum} approvals the policy requires come from its approvers`,
            );
          }
        }
        await write(
          info,
          { type: "approval_decided", data: { approvalId, status: "approved", decisions } },
          `approval-resolved:${approvalId}`,
        );
        return { type: "allow" };
      }
      case "pending":
        return { type: "suspend", reason: record.reason, data: { approvalId, expiresAt: record.expiresAt } };
      case "cancelled":
        // Its task was cancelled while it waited (audited by the store): it never authorises anything.
        return deny(info, "denied", `approval ${approvalId} was cancelled`);
    }
  };

  return {
    async beforeToolCall(info) {
      const previous = info.previousSuspension?.data?.approvalId;
      if (typeof previous === "string") return fromRecord(info, previous);

      const action = actionOf(info);
      const result = await validator.validate(action);
      await write(info, {
        type: "policy_verdict",
        data: {
          tool: action.tool,
          toolUseId: info.call.id,
          input: action.input,
          verdict: result.verdict,
          verdicts: result.verdicts,
          ...(result.decidedBy ? { decidedBy: result.decidedBy } : {}),
        },
      });
      const verdict = result.verdict;
      switch (verdict.type) {
        case "allow":
          return { type: "allow" };
        case "deny":
          outcomes.set(info.call.id, "denied");
          return {
            type: "deny",
            reason: verdict.reason,
            ...(result.decidedBy ? { policy: result.decidedBy } : {}),
          };
        case "require_approval": {
          const approvers = expandApprovers(verdict.approvers);
          if (approvers.length === 0) {
            outcomes.set(info.call.id, "denied");
            return {
              type: "deny",
              reason: "approval required but no approvers are enrolled",
              ...(result.decidedBy ? { policy: result.decidedBy } : {}),
            };
          }
          const jobId = info.run.attributes?.jobId;
          const { record, created } = await approvals.request({
            taskId: info.run.taskId,
            toolUseId: info.call.id,
            action,
            approvers,
            quorum: verdict.quorum,
            ttlMs: verdict.ttlMs,
            reason: verdict.reason,
            ...(jobId ? { jobId } : {}),
          });
          // A retried step finds its approval; it may already be decided.
          if (!created && record.status !== "pending") return fromRecord(info, record.id);
          if (created) {
            await write(info, {
              type: "approval_requested",
              data: {
                approvalId: record.id,
                tool: action.tool,
                toolUseId: info.call.id,
                approvers,
                quorum: record.quorum,
                expiresAt: record.expiresAt,
                reason: record.reason,
              },
            });
            await notifier
              ?.notify({
                type: "approval-requested",
                approvalId: record.id,
                taskId: record.taskId,
                ...(record.jobId ? { jobId: record.jobId } : {}),
                tenant: action.tenant,
                userId: action.userId,
                tool: action.tool,
                input: action.input,
                approvers,
                quorum: record.quorum,
                expiresAt: record.expiresAt,
                reason: record.reason,
              })
              .catch((err: unknown) =>
                logger?.warn({ err, approvalId: record.id }, "approval notification failed"),
              );
          }
          return {
            type: "suspend",
            reason: verdict.reason,
            data: { approvalId: record.id, expiresAt: record.expiresAt },
          };
        }
      }
    },

    async afterToolCall(info) {
      const hinted = outcomes.get(info.call.id);
      outcomes.delete(info.call.id);
      const outcome: ActionOutcome =
        info.decision.type === "allow" ? (info.result.isError ? "error" : "ok") : (hinted ?? "denied");
      const content = info.result.content;
      await write(info, {
        type: "action",
        data: {
          tool: info.call.name,
          toolUseId: info.call.id,
          input: info.call.input,
          outcome,
          output:
            content.length > maxOutput
              ? `${content.slice(0, maxOutput)}… [${content.length - maxOutput} more chars]`
              : content,
          durationMs: Math.round(info.durationMs),
          ...(info.result.isError && info.decision.type === "deny" ? { error: info.decision.reason } : {}),
        },
      });
    },
  };
}
