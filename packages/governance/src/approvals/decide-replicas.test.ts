import { beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { useRedisReplicated } from "@agentry/testkit";
import { AuditLog } from "../audit/audit-log.js";
import { createTestApprovers, testApprovalRequest } from "../testing.js";
import { ApprovalStore } from "./approval-store.js";

// A decision the master acknowledged but had not yet sent to its replica is lost when the replica
// takes over: the approver was told "approved" and the task waits on. With waitReplicas, a
// decision returns only once a replica holds it.
const servers = useRedisReplicated();
let onMaster: Redis;
let onReplica: Redis;

const approvers = createTestApprovers(["alice", "bob"]);

beforeAll(() => {
  onMaster = servers.connect(servers.master);
  onReplica = servers.connect(servers.replica);
});

const storeOn = (prefix: string, timeoutMs: number) => {
  const audit = new AuditLog({ redis: onMaster, prefix });
  const store = new ApprovalStore({
    redis: onMaster,
    prefix,
    approverKeys: approvers.keys,
    audit,
    waitReplicas: { replicas: 1, timeoutMs },
  });
  return { store, audit, onReplica: new ApprovalStore({ redis: onReplica, prefix }) };
};

describe("ApprovalStore with waitReplicas", () => {
  it("returns a vote and a resolution once the replica holds them", async () => {
    const { store, onReplica: replicaStore } = storeOn("{dr1}", 10_000);
    const { record } = await store.request(testApprovalRequest("task-1", { quorum: 2 }));

    expect(await store.decide(approvers.sign("alice", record.id, "approve"))).toMatchObject({
      type: "recorded",
    });
    // No waiting here: decide returned once the replica acknowledged.
    expect(await replicaStore.get(record.id)).toMatchObject({
      status: "pending",
      decisions: [{ approver: "alice", outcome: "approve" }],
    });
    expect(await store.decide(approvers.sign("bob", record.id, "approve"))).toMatchObject({
      type: "decided",
      status: "approved",
    });
    expect((await replicaStore.get(record.id))?.status).toBe("approved");
  });

  it("a decision the replica does not acknowledge in time fails retryable, naming it; it stands on the master and is audited; deciding again finds it resolved", async () => {
    const { store, audit } = storeOn("{dr2}", 200);
    const { record } = await store.request(testApprovalRequest("task-2"));
    const approve = approvers.sign("alice", record.id, "approve");
    servers.replica.process.kill("SIGSTOP");
    try {
      const err = await store.tryDecide(approve).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: "REDIS_UNAVAILABLE",
        retryable: true,
        details: { approvalId: record.id, approver: "alice" },
        message: expect.stringMatching(
          /0 of 1 Redis replica\(s\) acknowledged it within 200 ms.*decide again/,
        ),
      });
    } finally {
      servers.replica.process.kill("SIGCONT");
    }
    expect((await store.get(record.id))?.status).toBe("approved");
    expect((await audit.read()).map((e) => e.type)).toEqual(["approval_vote"]);
    // The approver tries again: the master kept the decision, so the approval is already approved.
    expect(await store.tryDecide(approve)).toMatchObject({ type: "already-decided", status: "approved" });
  });
});
