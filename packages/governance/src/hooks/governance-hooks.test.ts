import type { ToolCallDecision, ToolCallInfo } from "@agentry/agent";
import { describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { ApprovalStore } from "../approvals/approval-store.js";
import { parseApproversFile } from "../approvals/approvers-file.js";
import { generateApproverKeyPair, signDecision } from "../approvals/signing.js";
import { AuditLog } from "../audit/audit-log.js";
import type { ApprovalRequestedEvent } from "../notifiers/notifier.js";
import { DEFAULT_POLICY_FILE, loadPolicyFile, parsePolicyFile } from "../policies/policy-file.js";
import { SafetyValidator } from "../policies/validator.js";
import { createGovernanceHooks } from "./governance-hooks.js";

const redis = useTestRedis("gov-hooks");
const alice = generateApproverKeyPair();
const bob = generateApproverKeyPair();
const approverKeys = parseApproversFile(`alice: ${alice.publicKey}\nbob: ${bob.publicKey}`);

function setup() {
  let now = 5_000_000;
  const clock = { now: () => now };
  const prefix = redis.freshPrefix("hooks");
  const client = redis.client();
  const approvals = new ApprovalStore({ redis: client, prefix, clock, approverKeys });
  const audit = new AuditLog({ redis: client, prefix, clock });
  const notified: ApprovalRequestedEvent[] = [];
  const hooks = createGovernanceHooks({
    validator: new SafetyValidator({ policies: loadPolicyFile(DEFAULT_POLICY_FILE), clock }),
    approvals,
    audit,
    approverKeys,
    clock,
    notifier: { notify: async (e) => void notified.push(e) },
  });
  return { hooks, approvals, audit, notified, client, prefix, advance: (ms: number) => (now += ms) };
}

let n = 0;
function call(name: string, input: unknown, taskId = `task-${++n}`): ToolCallInfo {
  return {
    run: {
      taskId,
      tenant: "acme",
      userId: "u1",
      sessionId: "s1",
      attributes: { traceId: "trace-9", jobId: `job-${taskId}` },
    },
    step: 1,
    call: { type: "tool_use", id: `toolu_${n}`, name, input },
  };
}
const resume = (info: ToolCallInfo, decision: ToolCallDecision): ToolCallInfo => ({
  ...info,
  previousSuspension: {
    reason: decision.type === "suspend" ? decision.reason : "",
    ...(decision.type === "suspend" && decision.data ? { data: decision.data } : {}),
  },
});
const approvalIdOf = (d: ToolCallDecision): string =>
  d.type === "suspend" ? String(d.data?.approvalId) : "";
const sign = (
  key: string,
  approvalId: string,
  approver: string,
  outcome: "approve" | "reject",
  reason?: string,
) =>
  signDecision(key, { approvalId, approver, outcome, decidedAt: 5_000_100, ...(reason ? { reason } : {}) });

describe("createGovernanceHooks", () => {
  it("allows harmless tools and audits the verdict and the action", async () => {
    const { hooks, audit } = setup();
    const info = call("get_weather", { city: "Paris" });
    const decision = await hooks.beforeToolCall(info);
    expect(decision).toEqual({ type: "allow" });
    await hooks.afterToolCall({
      ...info,
      decision,
      durationMs: 3,
      result: { type: "tool_result", toolUseId: info.call.id, content: '{"tempC":18}' },
    });
    const entries = await audit.read();
    expect(entries.map((e) => e.type)).toEqual(["policy_verdict", "action"]);
    expect(entries[1]).toMatchObject({
      taskId: info.run.taskId,
      traceId: "trace-9",
      data: { tool: "get_weather", outcome: "ok", output: '{"tempC":18}' },
    });
  });

  it("denies production deletes naming the policy", async () => {
    const { hooks, audit } = setup();
    const info = call("delete_resource", { resource: "db", env: "production" });
    const decision = await hooks.beforeToolCall(info);
    expect(decision).toEqual({
      type: "deny",
      reason: "Production deletes are forbidden",
      policy: "no-prod-delete",
    });
    await hooks.afterToolCall({
      ...info,
      decision,
      durationMs: 0,
      result: { type: "tool_result", toolUseId: info.call.id, content: "Denied", isError: true },
    });
    expect((await audit.read()).map((e) => [e.type, e.type === "action" ? e.data.outcome : e.data])).toEqual([
      ["policy_verdict", expect.objectContaining({ decidedBy: "no-prod-delete" })],
      ["action", "denied"],
    ]);
  });

  it("denies a tool the registry declares destructive in production, whatever its name", async () => {
    const { hooks, audit } = setup();
    const declared = {
      ...call("reset_cluster", { cluster: "c1", target: { environment: "LIVE" } }),
      destructive: true,
    };
    expect(await hooks.beforeToolCall(declared)).toEqual({
      type: "deny",
      reason: "Production deletes are forbidden",
      policy: "no-prod-delete",
    });
    // The same call without the declaration reads as harmless: the flag is what decided.
    expect(
      await hooks.beforeToolCall(call("reset_cluster", { cluster: "c1", target: { environment: "LIVE" } })),
    ).toEqual({ type: "allow" });
    expect(
      (await audit.read()).map((e) => (e.type === "policy_verdict" ? e.data.verdict.type : e.type)),
    ).toEqual(["deny", "allow"]);
  });

  it("approval path: suspend, retry finds the same approval, still pending, approved → allow", async () => {
    const { hooks, approvals, audit, notified } = setup();
    const info = call("delete_resource", { resource: "db", env: "staging" });
    const first = await hooks.beforeToolCall(info);
    expect(first).toMatchObject({ type: "suspend", reason: "Deleting a resource needs a human approval" });
    const approvalId = approvalIdOf(first);
    // Retried step: same approval, no second notification.
    expect(approvalIdOf(await hooks.beforeToolCall(info))).toBe(approvalId);
    expect(notified).toHaveLength(1);
    expect(notified[0]).toMatchObject({
      approvalId,
      approvers: ["alice", "bob"],
      tool: "delete_resource",
      jobId: `job-${info.run.taskId}`,
    });
    expect(await approvals.require(approvalId)).toMatchObject({
      approvers: ["alice", "bob"],
      quorum: 1,
      jobId: `job-${info.run.taskId}`,
    });

    expect(await hooks.beforeToolCall(resume(info, first))).toMatchObject({
      type: "suspend",
      data: { approvalId },
    });
    await approvals.decide(sign(alice.privateKey, approvalId, "alice", "approve", "fine"));
    expect(await hooks.beforeToolCall(resume(info, first))).toEqual({ type: "allow" });
    expect(await approvals.unacknowledgedResolved()).toEqual([]);
    const types = (await audit.read()).map((e) => e.type);
    expect(types).toEqual(["policy_verdict", "approval_requested", "policy_verdict", "approval_decided"]);
  });

  it("rejected → deny with who and why", async () => {
    const { hooks, approvals } = setup();
    const info = call("delete_resource", { resource: "db", env: "staging" });
    const first = await hooks.beforeToolCall(info);
    await approvals.decide(sign(bob.privateKey, approvalIdOf(first), "bob", "reject", "too risky"));
    expect(await hooks.beforeToolCall(resume(info, first))).toEqual({
      type: "deny",
      reason: "rejected by bob: too risky",
      policy: "approval",
    });
  });

  it("expired → deny approval expired, audited", async () => {
    const { hooks, audit, advance } = setup();
    const info = call("delete_resource", { resource: "db", env: "staging" });
    const first = await hooks.beforeToolCall(info);
    advance(3_600_000);
    const decision = await hooks.beforeToolCall(resume(info, first));
    expect(decision).toEqual({
      type: "deny",
      reason: `approval ${approvalIdOf(first)} expired`,
      policy: "approval",
    });
    await hooks.afterToolCall({
      ...resume(info, first),
      decision,
      durationMs: 0,
      result: { type: "tool_result", toolUseId: info.call.id, content: "x", isError: true },
    });
    expect((await audit.tail(2)).map((e) => [e.type, e.type === "action" ? e.data.outcome : ""])).toEqual([
      ["approval_expired", ""],
      ["action", "expired"],
    ]);
  });

  it("a decision written straight into Redis does not pass the resume check", async () => {
    const { hooks, client, prefix, audit } = setup();
    const info = call("delete_resource", { resource: "db", env: "staging" });
    const first = await hooks.beforeToolCall(info);
    const approvalId = approvalIdOf(first);
    const mallory = generateApproverKeyPair();
    const forged = sign(mallory.privateKey, approvalId, "alice", "approve");
    await client.hset(
      `${prefix}:approval:${approvalId}`,
      "status",
      "approved",
      "decisions",
      JSON.stringify([{ ...forged, reason: "" }]),
    );
    const decision = await hooks.beforeToolCall(resume(info, first));
    expect(decision).toMatchObject({ type: "deny", policy: "approval" });
    expect(decision.type === "deny" && decision.reason).toMatch(
      /refused: only 0 of 1 approvals carry a valid signature/,
    );
    expect((await audit.tail(1))[0]).toMatchObject({
      type: "approval_refused",
      data: { approvalId, approver: "alice" },
    });
  });

  it("a replayed approval of another call is refused", async () => {
    const { hooks, approvals } = setup();
    const a = call("delete_resource", { resource: "a", env: "staging" });
    const b = call("delete_resource", { resource: "b", env: "staging" });
    const sa = await hooks.beforeToolCall(a);
    await hooks.beforeToolCall(b);
    await approvals.decide(sign(alice.privateKey, approvalIdOf(sa), "alice", "approve"));
    // b resumes pointing at a's approval.
    const decision = await hooks.beforeToolCall(resume(b, sa));
    expect(decision.type === "deny" && decision.reason).toMatch(/belongs to another tool call/);
  });

  it("an audit failure fails the step (AUDIT_FAILED)", async () => {
    const { hooks, client } = setup();
    client.disconnect();
    const err = await hooks.beforeToolCall(call("get_weather", { city: "Oslo" })).catch((e: unknown) => e);
    expect(AgentryError.isInstance(err) && err.code).toBe("AUDIT_FAILED");
  });

  it("re-derives the bar from the loaded policy: a record edited in Redis to ask for fewer approvals does not pass", async () => {
    const prefix = redis.freshPrefix("hooks-bar");
    const client = redis.client();
    const approvals = new ApprovalStore({ redis: client, prefix, approverKeys });
    const audit = new AuditLog({ redis: client, prefix });
    const policies = parsePolicyFile(
      "version: 1\npolicies:\n  - name: two-person-delete\n    when:\n      tool: delete_resource\n    then: require_approval\n    approvers: [alice, bob]\n    quorum: 2\n    reason: two people must agree\n",
    );
    const hooks = createGovernanceHooks({
      validator: new SafetyValidator({ policies }),
      approvals,
      audit,
      approverKeys,
    });
    const info = call("delete_resource", { resource: "db", env: "staging" });
    const first = await hooks.beforeToolCall(info);
    const approvalId = approvalIdOf(first);
    expect((await approvals.require(approvalId)).quorum).toBe(2);
    // Someone with write access to Redis lowers the quorum; one real approval then resolves it.
    await client.hset(`${prefix}:approval:${approvalId}`, "quorum", "1");
    await approvals.decide(
      signDecision(alice.privateKey, {
        approvalId,
        approver: "alice",
        outcome: "approve",
        decidedAt: Date.now(),
      }),
    );
    expect((await approvals.require(approvalId)).status).toBe("approved");
    const decision = await hooks.beforeToolCall(resume(info, first));
    expect(decision).toMatchObject({ type: "deny", reason: expect.stringContaining("1 of the 2 approvals") });
    expect((await audit.read()).map((e) => e.type)).toContain("approval_refused");
  });
});
