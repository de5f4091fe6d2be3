import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AuditLog } from "../audit/audit-log.js";
import { testApprovalRequest } from "../testing.js";
import { ApprovalStore, approvalIdFor, type ApprovalRequest } from "./approval-store.js";
import { parseApproversFile } from "./approvers-file.js";
import { generateApproverKeyPair, signDecision, verifyDecision } from "./signing.js";
import type { ApprovalResolvedEvent, DecisionOutcome, SignedDecision } from "./types.js";

const run = promisify(execFile);
const redis = useTestRedis("gov-approvals");

const people = ["alice", "bob", "carol", "dave"] as const;
type Person = (typeof people)[number];
const pairs = Object.fromEntries(people.map((p) => [p, generateApproverKeyPair()])) as Record<
  Person,
  { publicKey: string; privateKey: string }
>;
const approversText = people.map((p) => `${p}: ${pairs[p].publicKey}`).join("\n");
const approverKeys = parseApproversFile(`# enrolled approvers\n\n${approversText}\n`);

function setup(options: { keys?: boolean } = {}) {
  let now = 1_000_000;
  const clock = { now: () => now };
  const prefix = redis.freshPrefix("apr");
  const store = new ApprovalStore({
    redis: redis.client(),
    prefix,
    clock,
    ...(options.keys === false ? {} : { approverKeys }),
    subscriber: () => redis.client(),
  });
  return { store, prefix, advance: (ms: number) => (now += ms), clock };
}

let seq = 0;
function request(overrides: Partial<ApprovalRequest> = {}): ApprovalRequest {
  seq += 1;
  return testApprovalRequest(`task-${seq}`, { jobId: `job-${seq}`, toolUseId: `toolu_${seq}`, ...overrides });
}

const decision = (
  approvalId: string,
  approver: Person,
  outcome: DecisionOutcome,
  decidedAt = 1_000_500,
): SignedDecision =>
  signDecision(pairs[approver].privateKey, {
    approvalId,
    approver,
    outcome,
    decidedAt,
    reason: `${approver} ${outcome}s`,
  });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (AgentryError.isInstance(err)) return err.code;
    throw err;
  }
  return "none";
}

describe("ApprovalStore", () => {
  it("full approve path: request, list, decide, event, reconcile, acknowledge", async () => {
    const { store } = setup();
    const events: ApprovalResolvedEvent[] = [];
    const unsubscribe = await store.subscribe((e) => events.push(e));
    const req = request();
    const { record, created } = await store.request(req);
    expect(created).toBe(true);
    expect(record).toMatchObject({
      id: approvalIdFor(req.taskId, req.toolUseId),
      status: "pending",
      quorum: 1,
      expiresAt: 1_060_000,
      decisions: [],
    });
    expect(record.action).toEqual(req.action);
    // Idempotent: a retried step finds the same approval.
    const again = await store.request(req);
    expect(again.created).toBe(false);
    expect(again.record.id).toBe(record.id);
    expect((await store.list({ status: "pending" })).map((r) => r.id)).toEqual([record.id]);

    const result = await store.decide(decision(record.id, "alice", "approve"));
    expect(result).toMatchObject({ type: "decided", status: "approved", approvals: 1 });
    expect(result.record.decisions).toEqual([
      expect.objectContaining({
        approver: "alice",
        outcome: "approve",
        reason: "alice approves",
        decidedAt: 1_000_500,
      }),
    ]);
    expect(verifyDecision(approverKeys, { ...result.record.decisions[0]!, approvalId: record.id })).toBe(
      true,
    );

    await expect
      .poll(() => events)
      .toEqual([{ approvalId: record.id, taskId: req.taskId, jobId: req.jobId, status: "approved" }]);
    await unsubscribe();
    expect(await store.list({ status: "pending" })).toEqual([]);
    expect((await store.unacknowledgedResolved()).map((r) => r.id)).toEqual([record.id]);
    expect(await store.acknowledge(record.id)).toBe(true);
    expect(await store.acknowledge(record.id)).toBe(false);
    expect(await store.unacknowledgedResolved()).toEqual([]);
    expect((await store.require(record.id)).acknowledgedAt).toBeDefined();
    expect(await codeOf(store.decide(decision(record.id, "bob", "approve")))).toBe("APPROVAL_INVALID");
    // A consumed approval is kept for the retention period, then its record expires.
    const ttl = await store.redis.pttl(`${store.keys.prefix}:approval:${record.id}`);
    expect(ttl).toBeGreaterThan(29 * 24 * 3_600_000);
  });

  it("a reject resolves the approval as rejected, with who and why", async () => {
    const { store } = setup();
    const { record } = await store.request(request());
    const result = await store.decide(decision(record.id, "bob", "reject"));
    expect(result).toMatchObject({ type: "decided", status: "rejected" });
    const stored = await store.require(record.id);
    expect(stored.status).toBe("rejected");
    expect(stored.decisions[0]).toMatchObject({ approver: "bob", outcome: "reject", reason: "bob rejects" });
  });

  it("quorum of two: the first approval is recorded, the second resolves; each approver once", async () => {
    const { store } = setup();
    const { record } = await store.request(request({ approvers: ["alice", "bob", "carol"], quorum: 2 }));
    expect(await store.decide(decision(record.id, "alice", "approve"))).toMatchObject({
      type: "recorded",
      approvals: 1,
      quorum: 2,
    });
    const dup = await store.tryDecide(decision(record.id, "alice", "approve", 1_000_600));
    expect(dup).toEqual({ type: "already-decided", status: "pending", byApprover: true });
    expect((await store.require(record.id)).status).toBe("pending");
    expect(await store.decide(decision(record.id, "carol", "approve"))).toMatchObject({
      type: "decided",
      status: "approved",
      approvals: 2,
    });
  });

  it("a reject after one of two approvals vetoes", async () => {
    const { store } = setup();
    const { record } = await store.request(request({ approvers: ["alice", "bob"], quorum: 2 }));
    await store.decide(decision(record.id, "alice", "approve"));
    expect(await store.decide(decision(record.id, "bob", "reject"))).toMatchObject({
      type: "decided",
      status: "rejected",
      approvals: 1,
    });
  });

  it("expiry: a decision after the expiry is refused and the approval expires", async () => {
    const { store, advance } = setup();
    const events: ApprovalResolvedEvent[] = [];
    const unsubscribe = await store.subscribe((e) => events.push(e));
    const { record } = await store.request(request({ ttlMs: 1_000 }));
    expect(await store.expire(record.id)).toEqual({ type: "not-due", expiresAt: record.expiresAt });
    advance(1_000);
    expect(await codeOf(store.decide(decision(record.id, "alice", "approve")))).toBe("APPROVAL_EXPIRED");
    expect((await store.require(record.id)).status).toBe("expired");
    expect(await store.expire(record.id)).toEqual({ type: "not-pending", status: "expired" });
    await expect.poll(() => events.map((e) => e.status)).toEqual(["expired"]);
    await unsubscribe();
  });

  it("expireDue sweeps every pending approval past its expiry", async () => {
    const { store, advance } = setup();
    const a = await store.request(request({ ttlMs: 1_000 }));
    const b = await store.request(request({ ttlMs: 5_000 }));
    advance(2_000);
    expect(await store.expireDue()).toEqual([a.record.id]);
    expect((await store.require(b.record.id)).status).toBe("pending");
    expect((await store.unacknowledgedResolved()).map((r) => r.status)).toEqual(["expired"]);
  });

  it("refuses unsigned, wrongly signed, replayed and non-listed decisions", async () => {
    const { store } = setup();
    const { record } = await store.request(request({ approvers: ["alice", "bob"] }));
    const other = await store.request(request({ approvers: ["alice", "bob"] }));

    const unsigned = { ...decision(record.id, "alice", "approve"), signature: "" };
    expect(await store.tryDecide(unsigned)).toEqual({ type: "bad-signature", approver: "alice" });
    // Signed by bob's key but claiming to be alice.
    const forged = {
      ...signDecision(pairs.bob.privateKey, {
        approvalId: record.id,
        approver: "alice",
        outcome: "approve",
        decidedAt: 1,
      }),
    };
    expect(await store.tryDecide(forged)).toEqual({ type: "bad-signature", approver: "alice" });
    // A reject signature turned into an approve.
    expect(
      await store.tryDecide({ ...decision(record.id, "alice", "reject"), outcome: "approve" }),
    ).toMatchObject({ type: "bad-signature" });
    // Replay: alice's signature for the other approval.
    const replayed = { ...decision(other.record.id, "alice", "approve"), approvalId: record.id };
    expect(await store.tryDecide(replayed)).toMatchObject({ type: "bad-signature" });
    expect(await codeOf(store.decide(replayed))).toBe("APPROVAL_INVALID");
    // Carol is enrolled and signs correctly, but is not listed on this approval.
    expect(await store.tryDecide(decision(record.id, "carol", "approve"))).toEqual({
      type: "not-approver",
      approver: "carol",
    });
    expect(await codeOf(store.decide(decision(record.id, "carol", "approve")))).toBe("APPROVAL_INVALID");
    // Someone not enrolled at all, with a key of their own, on an approval open to everyone.
    const open = await store.request(request({ approvers: ["*"] }));
    const mallory = generateApproverKeyPair();
    const fromMallory = signDecision(mallory.privateKey, {
      approvalId: open.record.id,
      approver: "mallory",
      outcome: "approve",
      decidedAt: 1,
    });
    expect(await store.tryDecide(fromMallory)).toEqual({ type: "not-approver", approver: "mallory" });
    // Unknown id.
    expect(await codeOf(store.decide(decision("apr_nope", "alice", "approve")))).toBe("NOT_FOUND");

    const stored = await store.require(record.id);
    expect(stored.status).toBe("pending");
    expect(stored.decisions).toEqual([]);
  });

  it("approve and reject racing from several clients resolve to exactly one outcome", async () => {
    for (let round = 0; round < 5; round++) {
      const { store, prefix, clock } = setup();
      const { record } = await store.request(request({ approvers: [...people], quorum: 1 }));
      const stores = people.map(
        () => new ApprovalStore({ redis: redis.client(), prefix, clock, approverKeys }),
      );
      const results = await Promise.all(
        people.map((p, i) =>
          stores[i]!.tryDecide(decision(record.id, p, i % 2 === 0 ? "approve" : "reject")),
        ),
      );
      const decided = results.filter((r) => r.type === "decided");
      expect(decided).toHaveLength(1);
      expect(results.filter((r) => r.type === "already-decided")).toHaveLength(3);
      const final = await store.require(record.id);
      expect(final.status).toBe(decided[0]?.type === "decided" ? decided[0].status : "?");
      expect(final.decisions).toHaveLength(1);
    }
  });

  it("approve and reject racing from several processes resolve to exactly one outcome", async () => {
    const { store, prefix } = setup({ keys: true });
    const real = new ApprovalStore({ redis: redis.client(), prefix, approverKeys });
    const { record } = await real.request(request({ approvers: [...people], quorum: 1 }));
    const startAt = Date.now() + 1_500;
    const children = people.map((p, i) =>
      run(
        process.execPath,
        [
          "--conditions=@agentry/source",
          "--import",
          "tsx",
          new URL("./decide-child.fixture.ts", import.meta.url).pathname,
        ],
        {
          env: {
            ...process.env,
            REDIS_URL: redis.url,
            PREFIX: prefix,
            APPROVERS: approversText,
            APPROVER: p,
            OUTCOME: i % 2 === 0 ? "approve" : "reject",
            PRIVATE_KEY: pairs[p].privateKey,
            APPROVAL_ID: record.id,
            START_AT: String(startAt),
          },
        },
      ),
    );
    const outputs = (await Promise.all(children)).map(
      (c) => JSON.parse(c.stdout) as { type: string; status?: string; outcome: string },
    );
    const decided = outputs.filter((o) => o.type === "decided");
    expect(decided).toHaveLength(1);
    expect(outputs.filter((o) => o.type === "already-decided")).toHaveLength(3);
    const final = await store.require(record.id);
    expect(final.status).toBe(decided[0]?.status);
    expect(final.decisions).toHaveLength(1);
    expect(final.decisions[0]?.outcome).toBe(decided[0]?.outcome);
  });

  it("reconcile finds a decision made while no subscriber listened", async () => {
    const { store } = setup();
    const { record } = await store.request(request());
    // Nobody subscribed: the event is lost, the state is not.
    await store.decide(decision(record.id, "alice", "approve"));
    const events: ApprovalResolvedEvent[] = [];
    const unsubscribe = await store.subscribe((e) => events.push(e));
    const missed = await store.unacknowledgedResolved();
    expect(missed.map((r) => ({ id: r.id, status: r.status, jobId: r.jobId }))).toEqual([
      { id: record.id, status: "approved", jobId: record.jobId },
    ]);
    expect(events).toEqual([]);
    await unsubscribe();
  });

  it("without keys the store records any listed approver, and attachJob names the job", async () => {
    const { store } = setup({ keys: false });
    const { record } = await store.request(request({ jobId: undefined, approvers: ["*"] }));
    await store.attachJob(record.id, "job-x");
    expect((await store.require(record.id)).jobId).toBe("job-x");
    expect(await store.decide({ ...decision(record.id, "dave", "approve") })).toMatchObject({
      type: "decided",
      status: "approved",
    });
    expect(await codeOf(store.attachJob("apr_missing", "j"))).toBe("NOT_FOUND");
  });

  it("rejects bad requests", async () => {
    const { store } = setup();
    expect(await codeOf(store.request(request({ quorum: 0 })))).toBe("INVALID_INPUT");
    expect(await codeOf(store.request(request({ approvers: [] })))).toBe("INVALID_INPUT");
  });

  it("with an audit log, votes and refusals are audited (resolutions are audited by the resuming task)", async () => {
    const prefix = redis.freshPrefix("apr-audit");
    let now = 1_000_000;
    const clock = { now: () => now };
    const client = redis.client();
    const audit = new AuditLog({ redis: client, prefix, clock });
    const store = new ApprovalStore({ redis: client, prefix, clock, approverKeys, audit });
    const { record } = await store.request(request({ approvers: ["alice", "bob", "carol"], quorum: 2 }));
    await store.tryDecide({ ...decision(record.id, "alice", "approve"), signature: "" });
    await store.decide(decision(record.id, "alice", "approve"));
    await store.tryDecide(decision(record.id, "dave", "approve"));
    await store.decide(decision(record.id, "bob", "approve"));
    const expiring = await store.request(request({ ttlMs: 10 }));
    now += 10;
    await store.expire(expiring.record.id);
    const entries = await audit.read();
    expect(entries.map((e) => [e.type, e.actor ?? ""])).toEqual([
      ["approval_refused", "approver:alice"],
      ["approval_vote", "approver:alice"],
      ["approval_refused", "approver:dave"],
      ["approval_vote", "approver:bob"],
    ]);
    expect(entries[0]?.data).toEqual({
      approvalId: record.id,
      approver: "alice",
      reason: "the signature does not verify",
    });
    expect(entries[2]?.data).toMatchObject({ reason: "not an approver of this approval" });
    expect(entries[3]).toMatchObject({
      taskId: record.taskId,
      tenant: "acme",
      data: { approver: "bob", approvals: 2, quorum: 2 },
    });
    expect((await store.require(record.id)).status).toBe("approved");
    expect((await store.require(expiring.record.id)).status).toBe("expired");
    expect(await audit.verify()).toMatchObject({ ok: true, count: 4 });
  });
});
