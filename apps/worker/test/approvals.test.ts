import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalStore, signDecision, type ApprovalRecord, type SignedDecision } from "@agentry/governance";
import { createTestApprovers } from "@agentry/governance/testing";
import { useTestRedis } from "@agentry/testkit";
import { startApprovalCluster, toolResultsSent, typesOf, type ApprovalCluster } from "./approvals-cluster.js";

// Two worker processes (one slot each) with the reference policy: a staging delete needs one
// approval from any enrolled approver (alice, bob, carol), valid for an hour.
const redis = useTestRedis("approvals");
let c: ApprovalCluster;
beforeAll(async () => {
  c = await startApprovalCluster(redis, { workers: 2, concurrency: 1 });
}, 60_000);
afterAll(async () => {
  await c?.close();
});

async function record(id: string): Promise<ApprovalRecord> {
  return c.store.require(id);
}

describe("approvals across worker processes", () => {
  it("approve: the task parks without a slot, resumes on a worker after a signed approval and runs the tool once", async () => {
    const a = await c.submit("delete db-1 in staging");
    const b = await c.submit("delete db-2 in staging");
    const [sa, sb] = await Promise.all([c.awaitingApproval(a), c.awaitingApproval(b)]);
    const [idA] = sa.approvalIds;
    const [idB] = sb.approvalIds;
    if (!idA || !idB) throw new Error("no approval ids");

    const pending = await record(idA);
    expect(pending).toMatchObject({
      taskId: a,
      status: "pending",
      quorum: 1,
      approvers: ["alice", "bob", "carol"],
      action: { tool: "delete_resource", input: { resource: "db-1", env: "staging" } },
    });
    expect(pending.expiresAt - pending.createdAt).toBe(3_600_000);

    // Both parked tasks hold no slot: with one slot per worker, other work still completes.
    const weather = await c.submit("What's the weather in Paris?");
    const w = await c.client.wait(weather, { timeoutMs: 30_000 });
    expect(w.text).toContain("Paris");
    expect((await c.client.status(a)).state).toBe("awaiting_approval");
    expect((await c.client.status(b)).state).toBe("awaiting_approval");
    expect((await c.deletions()).filter((d) => d.taskId === a || d.taskId === b)).toEqual([]);

    const decided = await c.store.decide(
      c.approvers.sign("alice", idA, "approve", { reason: "planned cleanup" }),
    );
    expect(decided).toMatchObject({ type: "decided", status: "approved", approvals: 1 });
    await c.store.decide(c.approvers.sign("carol", idB, "approve"));

    const [ra, rb] = await Promise.all([
      c.client.wait(a, { timeoutMs: 30_000 }),
      c.client.wait(b, { timeoutMs: 30_000 }),
    ]);
    expect(ra.text).toContain("Done: db-1 was deleted");
    expect(rb.text).toContain("db-2");
    const deletions = await c.deletions();
    expect(deletions.filter((d) => d.taskId === a).map((d) => d.resource)).toEqual(["db-1"]);
    expect(deletions.filter((d) => d.taskId === b).map((d) => d.resource)).toEqual(["db-2"]);
    // The model saw the tool's real output, not an error.
    expect(toolResultsSent(c.fake, pending.toolUseId)).toEqual([expect.objectContaining({ isError: false })]);

    const done = await record(idA);
    expect(done.status).toBe("approved");
    expect(done.decisions.map((d) => [d.approver, d.outcome, d.reason])).toEqual([
      ["alice", "approve", "planned cleanup"],
    ]);
    expect(done.acknowledgedAt).toBeGreaterThan(0);
    expect((await c.store.unacknowledgedResolved()).map((r) => r.id)).not.toContain(idA);

    const entries = await c.auditOf(a);
    const types = typesOf(entries);
    for (const t of [
      "request",
      "policy_verdict",
      "approval_requested",
      "approval_decided",
      "action",
      "response",
    ])
      expect(types).toContain(t);
    expect(types.indexOf("approval_requested")).toBeLessThan(types.indexOf("approval_decided"));
    expect(types.indexOf("approval_decided")).toBeLessThan(types.indexOf("action"));
    expect(types.filter((t) => t === "approval_decided")).toHaveLength(1);
    const decidedEntry = entries.find((e) => e.type === "approval_decided");
    expect(decidedEntry?.data).toMatchObject({
      approvalId: idA,
      status: "approved",
      decisions: [{ approver: "alice", outcome: "approve" }],
    });
    const actions = entries.filter((e) => e.type === "action");
    expect(actions).toHaveLength(1);
    expect(actions[0]?.data).toMatchObject({ tool: "delete_resource", outcome: "ok" });
    expect((await c.audit.verify()).ok).toBe(true);
    // The resumed attempt ran on one of the two processes.
    await expect
      .poll(() => c.workers.some((p) => p.output().includes('"resumed":true')), { timeout: 30_000 })
      .toBe(true);
  }, 90_000);

  it("cancel while awaiting approval: the session's next task runs at once, the approval is cancelled and audited, nothing stays pending", async () => {
    const sessionId = `s-cancel-${Date.now()}`;
    const parked = (
      await c.client.submit(
        { prompt: "delete db-c1 in staging", userId: "ops", sessionId },
        { tenant: "acme" },
      )
    ).taskId;
    const { approvalIds } = await c.awaitingApproval(parked);
    const [approvalId] = approvalIds;
    if (!approvalId) throw new Error("no approval id");
    // The next task of the session waits behind the parked one (it holds the session's turn).
    const next = (
      await c.client.submit(
        { prompt: "What's the weather in Oslo?", userId: "ops", sessionId },
        { tenant: "acme" },
      )
    ).taskId;
    // A worker took it and parked it behind the session's turn (a condition, not a guess: the
    // transient "running" state may be too short to observe).
    await expect
      .poll(async () => (await c.client.status(next)).progress, { timeout: 30_000 })
      .toMatchObject({ phase: "parked", reason: "session_busy" });
    expect((await c.client.status(next)).state).toBe("queued");

    expect(await c.client.cancel(parked, { tenant: "acme" })).toEqual({
      cancelled: true,
      state: "awaiting_approval",
    });
    // The turn was released at cancel time: the next task completes without waiting out any lease.
    const result = await c.client.wait(next, { timeoutMs: 60_000 });
    expect(result.text).toContain("Oslo");
    await expect.poll(async () => (await record(approvalId)).status, { timeout: 20_000 }).toBe("cancelled");
    expect((await c.store.list({ status: "pending" })).map((r) => r.id)).not.toContain(approvalId);
    // A decision after the cancellation is refused; the tool never ran.
    await expect(c.store.decide(c.approvers.sign("alice", approvalId, "approve"))).rejects.toMatchObject({
      code: "APPROVAL_INVALID",
    });
    expect((await c.deletions()).filter((d) => d.taskId === parked)).toEqual([]);
    const cancelledEntries = (await c.auditOf(parked)).filter((e) => e.type === "approval_cancelled");
    expect(cancelledEntries).toHaveLength(1);
    expect(cancelledEntries[0]?.data).toMatchObject({ approvalId });
  }, 120_000);

  it("reject: the model gets an error tool_result naming who and why, the task completes, the tool never runs", async () => {
    const t = await c.submit("delete cache-9 in staging");
    const [id] = (await c.awaitingApproval(t)).approvalIds;
    if (!id) throw new Error("no approval id");
    const result = await c.store.decide(
      c.approvers.sign("bob", id, "reject", { reason: "cache still in use" }),
    );
    expect(result).toMatchObject({ type: "decided", status: "rejected" });

    const r = await c.client.wait(t, { timeoutMs: 30_000 });
    expect(r.text).toContain("I could not complete delete_resource");
    expect(r.text).toContain("rejected by bob: cache still in use");
    expect((await c.client.status(t)).state).toBe("completed");
    expect((await c.deletions()).filter((d) => d.taskId === t)).toEqual([]);
    const rec = await record(id);
    expect(rec.status).toBe("rejected");
    const sent = toolResultsSent(c.fake, rec.toolUseId);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.isError).toBe(true);
    expect(sent[0]?.text).toContain("rejected by bob: cache still in use");

    const entries = await c.auditOf(t);
    expect(entries.find((e) => e.type === "approval_decided")?.data).toMatchObject({
      approvalId: id,
      status: "rejected",
      decisions: [{ approver: "bob", outcome: "reject", reason: "cache still in use" }],
    });
    expect(entries.filter((e) => e.type === "action").map((e) => e.data)).toEqual([
      expect.objectContaining({ outcome: "rejected" }),
    ]);
    expect((await c.audit.verify()).ok).toBe(true);
  }, 60_000);

  it("approve/reject race: concurrent deciders resolve to exactly one outcome and the task follows it", async () => {
    const tasks = await Promise.all([1, 2, 3].map((i) => c.submit(`delete race-${i} in staging`)));
    const ids = await Promise.all(
      tasks.map(async (t) => {
        const [id] = (await c.awaitingApproval(t)).approvalIds;
        if (!id) throw new Error("no approval id");
        return id;
      }),
    );
    // Each decider on its own connection, so the scripts really run concurrently.
    const deciders = ["alice", "bob", "carol"].map((name) => ({
      name,
      store: new ApprovalStore({ redis: redis.client(), prefix: c.prefix, approverKeys: c.approvers.keys }),
    }));
    const outcomes = await Promise.all(
      ids.map(async (id, i) => {
        // Alternate who rejects, so both outcomes get a chance to win.
        const signed: SignedDecision[] = deciders.map((d, j) =>
          c.approvers.sign(d.name, id, (i + j) % 2 === 0 ? "approve" : "reject", {
            reason: `vote of ${d.name}`,
          }),
        );
        const results = await Promise.all(
          signed.map((s, j) => (deciders[j] as (typeof deciders)[number]).store.tryDecide(s)),
        );
        const winners = results.filter((r) => r.type === "decided");
        expect(winners).toHaveLength(1);
        expect(results.filter((r) => r.type === "already-decided")).toHaveLength(2);
        const rec = await record(id);
        expect(rec.decisions).toHaveLength(1);
        const winner = winners[0] as Extract<(typeof results)[number], { type: "decided" }>;
        expect(rec.status).toBe(winner.status);
        return { status: winner.status, approver: rec.decisions[0]?.approver as string };
      }),
    );

    const results = await Promise.all(tasks.map((t) => c.client.wait(t, { timeoutMs: 30_000 })));
    const deletions = await c.deletions();
    tasks.forEach((t, i) => {
      const outcome = outcomes[i] as (typeof outcomes)[number];
      const ran = deletions.filter((d) => d.taskId === t);
      if (outcome.status === "approved") {
        expect(ran.map((d) => d.resource)).toEqual([`race-${i + 1}`]);
        expect(results[i]?.text).toBe(`Done: race-${i + 1} was deleted in staging (simulated).`);
      } else {
        expect(ran).toEqual([]);
        expect(results[i]?.text).toContain(`rejected by ${outcome.approver}: vote of ${outcome.approver}`);
      }
    });
  }, 60_000);

  it("refuses unsigned, wrongly signed, replayed and unauthorised decisions, and a decision forged straight into Redis", async () => {
    const [t1, t2, t3] = await Promise.all(
      ["delete vol-1 in staging", "delete vol-2 in staging", "delete vol-3 in staging"].map((p) =>
        c.submit(p),
      ),
    );
    const [id1, id2, id3] = await Promise.all(
      [t1, t2, t3].map(async (t) => {
        const [id] = (await c.awaitingApproval(t as string)).approvalIds;
        if (!id) throw new Error("no approval id");
        return id;
      }),
    );
    if (!id1 || !id2 || !id3 || !t1 || !t2 || !t3) throw new Error("missing ids");
    const now = Date.now();
    const bare = { approvalId: id1, approver: "alice", outcome: "approve" as const, decidedAt: now };

    // Unsigned: empty or garbage signature.
    expect(await c.store.tryDecide({ ...bare, signature: "" })).toEqual({
      type: "bad-signature",
      approver: "alice",
    });
    expect(await c.store.tryDecide({ ...bare, signature: "bm90IGEgc2lnbmF0dXJl" })).toEqual({
      type: "bad-signature",
      approver: "alice",
    });
    // Wrongly signed: bob's key on a decision that claims to be alice's.
    const wrong = signDecision(c.approvers.privateKeys.bob as string, bare);
    expect(await c.store.tryDecide(wrong)).toEqual({ type: "bad-signature", approver: "alice" });
    // Replayed: alice's valid signature for another approval.
    const forId2 = c.approvers.sign("alice", id2, "approve", { decidedAt: now });
    expect(await c.store.tryDecide({ ...forId2, approvalId: id1 })).toEqual({
      type: "bad-signature",
      approver: "alice",
    });
    // Tampered: alice's valid signature with the outcome flipped.
    const rejectSigned = c.approvers.sign("alice", id1, "reject", { decidedAt: now });
    expect(await c.store.tryDecide({ ...rejectSigned, outcome: "approve" })).toEqual({
      type: "bad-signature",
      approver: "alice",
    });
    // Unauthorised: mallory signs with her own key but is not enrolled; the script refuses her
    // even when the store checks no signature.
    const mallory = createTestApprovers(["mallory"]);
    const malloryDecision = mallory.sign("mallory", id1, "approve");
    expect(await c.store.tryDecide(malloryDecision)).toEqual({ type: "not-approver", approver: "mallory" });
    const unchecked = new ApprovalStore({ redis: c.conn, prefix: c.prefix });
    expect(await unchecked.tryDecide(malloryDecision)).toEqual({ type: "not-approver", approver: "mallory" });
    await expect(c.store.decide(malloryDecision)).rejects.toMatchObject({ code: "APPROVAL_INVALID" });

    // Every refusal by the auditing store is in the audit log.
    const refusals = (await c.audit.tail(200))
      .filter((e) => e.type === "approval_refused" && e.data.approvalId === id1)
      .map((e) => (e.type === "approval_refused" ? [e.data.approver, e.data.reason] : []));
    expect(refusals).toEqual([
      ...Array.from({ length: 5 }, () => ["alice", "the signature does not verify"]),
      ["mallory", "not an approver of this approval"],
      ["mallory", "not an approver of this approval"],
    ]);

    // Nothing was recorded; the task still waits.
    const still = await record(id1);
    expect(still.status).toBe("pending");
    expect(still.decisions).toEqual([]);
    expect((await c.client.status(t1)).state).toBe("awaiting_approval");

    // Forged straight into Redis, bypassing the script: t1 with alice's replayed signature,
    // t2 with a garbage one, t3 with a valid signature of an approver the record does not list.
    const forge = async (id: string, taskId: string, decision: SignedDecision) => {
      const key = `${c.prefix}:approval:${id}`;
      const stored = {
        approver: decision.approver,
        outcome: decision.outcome,
        reason: "",
        decidedAt: decision.decidedAt,
        signature: decision.signature,
      };
      await c.conn.hset(
        key,
        "status",
        "approved",
        "decisions",
        JSON.stringify([stored]),
        "resolvedAt",
        String(Date.now()),
      );
      await c.conn.zrem(`${c.prefix}:approvals:pending`, id);
      await c.conn.zadd(`${c.prefix}:approvals:resolved`, Date.now(), id);
      await c.conn.publish(c.store.channel, JSON.stringify({ approvalId: id, taskId, status: "approved" }));
    };
    await forge(id1, t1, { ...forId2, approvalId: id1 });
    await forge(id2, t2, { ...c.approvers.sign("alice", id2, "approve"), signature: "Zm9yZ2Vk" });
    await c.conn.hset(`${c.prefix}:approval:${id3}`, "approvers", JSON.stringify(["bob"]));
    await forge(id3, t3, c.approvers.sign("alice", id3, "approve"));

    const results = await Promise.all([t1, t2, t3].map((t) => c.client.wait(t, { timeoutMs: 30_000 })));
    const deletions = await c.deletions();
    for (const [i, t] of [t1, t2, t3].entries()) {
      const id = [id1, id2, id3][i] as string;
      expect(results[i]?.text).toContain(`approval ${id} refused`);
      expect(deletions.filter((d) => d.taskId === t)).toEqual([]);
      const entries = await c.auditOf(t);
      const refused = entries.filter((e) => e.type === "approval_refused");
      expect(refused).toHaveLength(1);
      expect(refused[0]?.data).toMatchObject({
        approvalId: id,
        reason: expect.stringContaining("valid signature") as unknown,
      });
      expect(typesOf(entries)).not.toContain("approval_decided");
      expect(entries.filter((e) => e.type === "action").map((e) => e.data)).toEqual([
        expect.objectContaining({ outcome: "denied" }),
      ]);
      const rec = await record(id);
      expect(toolResultsSent(c.fake, rec.toolUseId)).toEqual([
        { text: expect.stringContaining("refused") as unknown, isError: true },
      ]);
    }
    expect((await c.audit.verify()).ok).toBe(true);
  }, 90_000);
});
