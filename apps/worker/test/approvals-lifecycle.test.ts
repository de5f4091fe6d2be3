import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestRedis } from "@agentry/testkit";
import {
  startApprovalCluster,
  toolResultsSent,
  typesOf,
  writePolicyFile,
  type ApprovalCluster,
} from "./approvals-cluster.js";
import { startWorkerProcess, type WorkerProcess } from "./worker-processes.js";

// Development deletes need one approval within 2 s; staging deletes need two approvers.
const POLICY = `version: 1
policies:
  - name: no-prod-delete
    when:
      tool: delete_resource
      input:
        env: production
    then: deny
  - name: quick-expiry
    when:
      tool: delete_resource
      input:
        env: development
    then: require_approval
    ttl: 2s
  - name: two-approvers
    when:
      tool: delete_resource
      input:
        env: staging
    then: require_approval
    approvers: [alice, bob, carol]
    quorum: 2
`;

const redis = useTestRedis("approvals-lifecycle");
let c: ApprovalCluster;
beforeAll(async () => {
  c = await startApprovalCluster(redis, { workers: 2, concurrency: 1, policy: writePolicyFile(POLICY) });
}, 60_000);
afterAll(async () => {
  await c?.close();
});

async function parked(prompt: string): Promise<{ taskId: string; approvalId: string }> {
  const taskId = await c.submit(prompt);
  const [approvalId] = (await c.awaitingApproval(taskId)).approvalIds;
  if (!approvalId) throw new Error("no approval id");
  return { taskId, approvalId };
}

describe("approval lifecycle across worker processes", () => {
  it("expiry: an undecided approval expires, the task resumes with an expired outcome and the tool never runs", async () => {
    const { taskId, approvalId } = await parked("delete tmp-1 in development");
    const pending = await c.store.require(approvalId);
    expect(pending.expiresAt - pending.createdAt).toBe(2_000);

    // Nobody decides; a worker's reconcile expires it and wakes the task.
    const r = await c.client.wait(taskId, { timeoutMs: 30_000 });
    expect(r.text).toContain(`approval ${approvalId} expired`);
    expect((await c.deletions()).filter((d) => d.taskId === taskId)).toEqual([]);
    const rec = await c.store.require(approvalId);
    expect(rec.status).toBe("expired");
    expect(toolResultsSent(c.fake, rec.toolUseId)).toEqual([
      { text: expect.stringContaining("expired") as unknown, isError: true },
    ]);
    // A late decision is refused.
    expect(await c.store.tryDecide(c.approvers.sign("alice", approvalId, "approve"))).toEqual({
      type: "expired",
    });

    const entries = await c.auditOf(taskId);
    expect(entries.find((e) => e.type === "approval_expired")?.data).toMatchObject({
      approvalId,
      expiresAt: rec.expiresAt,
    });
    expect(typesOf(entries)).not.toContain("approval_decided");
    expect(entries.filter((e) => e.type === "action").map((e) => e.data)).toEqual([
      expect.objectContaining({ outcome: "expired" }),
    ]);
    expect((await c.audit.verify()).ok).toBe(true);
  }, 60_000);

  it("quorum of two: one approval keeps the task waiting even when it is woken, the second completes it", async () => {
    const { taskId, approvalId } = await parked("delete bucket-7 in staging");
    expect(await c.store.require(approvalId)).toMatchObject({
      quorum: 2,
      approvers: ["alice", "bob", "carol"],
    });

    expect(await c.store.tryDecide(c.approvers.sign("alice", approvalId, "approve"))).toMatchObject({
      type: "recorded",
      approvals: 1,
      quorum: 2,
    });
    // The same approver twice does not count twice.
    expect(await c.store.tryDecide(c.approvers.sign("alice", approvalId, "approve"))).toMatchObject({
      type: "already-decided",
      byApprover: true,
    });
    // Wake the task as a stray event or reconcile pass would: it resumes, sees one approval of
    // two, and parks again on the same approval without running the tool.
    const parkedAttempts = (await c.client.status(taskId)).attempts;
    await (await c.client.queue.getJob(taskId))?.promote();
    let waiting = await c.client.status(taskId);
    await expect
      .poll(async () => (waiting = await c.client.status(taskId)), { timeout: 30_000, interval: 100 })
      .toMatchObject({ state: "awaiting_approval", attempts: parkedAttempts + 1 });
    expect(waiting.approvalIds).toEqual([approvalId]);
    expect((await c.store.require(approvalId)).status).toBe("pending");
    expect((await c.deletions()).filter((d) => d.taskId === taskId)).toEqual([]);

    expect(await c.store.tryDecide(c.approvers.sign("carol", approvalId, "approve"))).toMatchObject({
      type: "decided",
      status: "approved",
      approvals: 2,
    });
    const r = await c.client.wait(taskId, { timeoutMs: 30_000 });
    expect(r.text).toBe("Done: bucket-7 was deleted in staging (simulated).");
    expect((await c.deletions()).filter((d) => d.taskId === taskId).map((d) => d.resource)).toEqual([
      "bucket-7",
    ]);
    const entries = await c.auditOf(taskId);
    expect(entries.find((e) => e.type === "approval_decided")?.data).toMatchObject({
      status: "approved",
      decisions: [{ approver: "alice" }, { approver: "carol" }],
    });
    expect((await c.audit.verify()).ok).toBe(true);
  }, 60_000);

  // Stops every worker of this file, so it runs last.
  it("a decision made while no worker runs is picked up by the start-up reconcile of a new worker", async () => {
    const { taskId, approvalId } = await parked("delete queue-3 in staging");
    const codes = await Promise.all(c.workers.map((w) => w.stop()));
    expect(codes).toEqual([0, 0]);
    c.workers.splice(0);

    // No worker listens: the resolution event reaches nobody.
    expect(await c.conn.pubsub("NUMSUB", c.store.channel)).toEqual([c.store.channel, 0]);
    await c.store.decide(c.approvers.sign("alice", approvalId, "approve"));
    const decided = await c.store.decide(c.approvers.sign("bob", approvalId, "approve"));
    expect(decided).toMatchObject({ type: "decided", status: "approved" });
    expect((await c.client.status(taskId)).state).toBe("awaiting_approval");
    expect((await c.store.unacknowledgedResolved()).map((r) => r.id)).toContain(approvalId);

    const fresh = await c.startWorker("w3");
    const r = await c.client.wait(taskId, { timeoutMs: 30_000 });
    expect(r.text).toContain("queue-3");
    expect((await c.deletions()).filter((d) => d.taskId === taskId).map((d) => d.resource)).toEqual([
      "queue-3",
    ]);
    await expect.poll(() => fresh.output(), { timeout: 30_000 }).toContain('"event":"task-completed"');
    expect((await c.store.require(approvalId)).acknowledgedAt).toBeGreaterThan(0);
    expect((await c.store.unacknowledgedResolved()).map((r) => r.id)).not.toContain(approvalId);
    expect((await c.audit.verify()).ok).toBe(true);
  }, 90_000);
});

function exitOf(w: WorkerProcess): Promise<number | null> {
  if (w.child.exitCode !== null) return Promise.resolve(w.child.exitCode);
  return new Promise((resolve) => w.child.once("exit", (n) => resolve(n)));
}

describe("policy file errors", () => {
  const cases: { name: string; text: string; reason: string }[] = [
    {
      name: "a schema error",
      text: "version: 1\npolicies:\n  - name: two-approvers\n    when:\n      tool: delete_resource\n    then: require_approval\n    quorum: 0\n",
      reason: ":7:13: policies[0].quorum: Too small: expected number to be >=1",
    },
    {
      name: "a YAML syntax error",
      text: "version: 1\npolicies:\n  - name: x\n    when: [tool: a\n",
      reason: ":5:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
    },
  ];

  it("a worker started with an invalid policy file exits non-zero naming the file, the line and the reason", async () => {
    const missing = "/nonexistent/agentry-policy.yaml";
    const runs = [
      ...cases.map((k) => ({ ...k, file: writePolicyFile(k.text) })),
      {
        name: "a missing file",
        file: missing,
        reason: `: cannot read policy file: ENOENT: no such file or directory, open '${missing}'`,
      },
    ];
    await Promise.all(
      runs.map(async (k) => {
        const w = startWorkerProcess("bad-policy", {
          REDIS_URL: redis.url,
          AGENTRY_PREFIX: redis.freshPrefix(),
          AGENTRY_LLM: "scripted",
          AGENTRY_POLICY_FILE: k.file,
        });
        const code = await exitOf(w);
        expect(code, `${k.name}:\n${w.output()}`).toBe(2);
        const lines = w
          .output()
          .split("\n")
          .filter((l) => l.startsWith("agentry-worker: "));
        expect(lines, `${k.name}:\n${w.output()}`).toEqual([`agentry-worker: ${k.file}${k.reason}`]);
        expect(w.output()).not.toContain('"event":"worker-started"');
      }),
    );
  }, 60_000);
});
