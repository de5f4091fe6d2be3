import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentryError, createRedis } from "@agentry/core";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient, BudgetLedger, FairShare } from "@agentry/runtime";
import { ApprovalStore, AuditLog, generateApproverKeyPair, signDecision } from "@agentry/governance";
import {
  startFakeAnthropic,
  startRedisCluster,
  type FakeAnthropic,
  type TestRedisCluster,
} from "@agentry/testkit";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";
import { referenceReply } from "@agentry/reference/testing";

// The end-to-end path against a three-node Redis Cluster started by the test. The hash-tagged
// prefix puts every key of every task (BullMQ's and Agentry's) in one slot, so multi-key Lua
// scripts work unchanged.
const PREFIX = "{agentry-ct}";

let cluster: TestRedisCluster;
let fake: FakeAnthropic;
const workers: WorkerProcess[] = [];
const keys = generateApproverKeyPair();
const dir = mkdtempSync(join(tmpdir(), "agentry-cluster-"));

beforeAll(async () => {
  cluster = await startRedisCluster({ nodes: 3 });
  fake = await startFakeAnthropic({ handler: referenceReply });
  writeFileSync(join(dir, "approvers"), `alice: ${keys.publicKey}\n`);
  const env = {
    REDIS_URL: cluster.url,
    AGENTRY_PREFIX: PREFIX,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_APPROVERS_FILE: join(dir, "approvers"),
  };
  workers.push(startWorkerProcess("c1", env), startWorkerProcess("c2", env));
  await Promise.all(workers.map((w) => waitStarted(w)));
}, 90_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await fake?.close();
  await cluster?.stop();
});

describe("Redis Cluster", () => {
  it("runs tasks, a paused approval and the audit chain end to end on a three-node cluster", async () => {
    const redis = createRedis({ url: cluster.url, role: "command" });
    const client = new AgentryClient({
      url: cluster.url,
      prefix: PREFIX,
      sessionOrder: new RedisSessionTurns({ redis, prefix: PREFIX }),
    });
    try {
      const weather = await client.submit(
        { prompt: "What's the weather in Oslo?", sessionId: "s1" },
        { tenant: "acme" },
      );
      const del = await client.submit(
        { prompt: "delete db-9 in staging", sessionId: "s2" },
        { tenant: "acme" },
      );
      expect((await client.wait(weather.taskId, { timeoutMs: 60_000 })).steps).toBe(2);

      await expect
        .poll(async () => (await client.status(del.taskId)).state, { timeout: 60_000 })
        .toBe("awaiting_approval");
      const [approvalId] = (await client.status(del.taskId)).approvalIds ?? [];
      const approvals = new ApprovalStore({ redis, prefix: PREFIX });
      await approvals.decide(
        signDecision(keys.privateKey, {
          approvalId: approvalId as string,
          outcome: "approve",
          approver: "alice",
          decidedAt: Date.now(),
        }),
      );
      const done = await client.wait(del.taskId, { timeoutMs: 60_000 });
      expect(done.text).toContain("db-9");

      const stats = await new BudgetLedger({ redis, prefix: PREFIX }).getStats("tenant:acme");
      // The ledger holds exactly what the provider billed, nothing left reserved.
      expect(stats.used.tokens).toBe(fake.billed().tokens);
      expect(stats.reserved.tokens).toBe(0);
      expect((await new AuditLog({ redis, prefix: PREFIX }).verify()).ok).toBe(true);
      // Every key really is in one slot of a multi-node cluster.
      const slots = new Set(
        await Promise.all(
          ["x", "y:z", "tasks:wait"].map((k) => redis.call("CLUSTER", "KEYSLOT", `${PREFIX}:${k}`)),
        ),
      );
      expect(slots.size).toBe(1);
    } finally {
      await client.close();
      redis.disconnect();
    }
  }, 150_000);

  it("keeps fair share on the cluster: a capped tenant's tasks all run, and a clock rebase moves the queue's priorities in one slot", async () => {
    const redis = createRedis({ url: cluster.url, role: "command" });
    const client = new AgentryClient({
      url: cluster.url,
      prefix: PREFIX,
      sessionOrder: new RedisSessionTurns({ redis, prefix: PREFIX }),
    });
    try {
      await client.setTenantSettings("capped", { maxRunning: 1 });
      const ids = [];
      for (let i = 0; i < 4; i++)
        ids.push((await client.submit({ prompt: `hello ${i}` }, { tenant: "capped" })).taskId);
      await Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 60_000 })));
      await expect
        .poll(() => client.tenantLoad(["capped"]))
        .toEqual([{ tenant: "capped", maxRunning: 1, weight: 1, running: 0, waiting: 0 }]);

      // The rebase script names the queue's BullMQ keys and the jobs it rewrites: one slot, on another queue.
      const fair = new FairShare({
        redis,
        prefix: PREFIX,
        queueName: "rebase-check",
        _internal: { rebaseAt: 2 },
      });
      const queue = new Queue("rebase-check", { connection: redis, prefix: PREFIX });
      try {
        const { stamps } = await fair.stamp("a", ["r1", "r2", "r3", "r4", "r5"], { fair: true });
        for (const s of stamps) await queue.add("agent.run", {}, { jobId: s.taskId, priority: s.priority });
        for (const s of stamps.slice(0, 3)) {
          const admission = await fair.admit({
            taskId: s.taskId,
            tenant: "a",
            attempt: "w",
            priority: s.priority,
          });
          await redis.zrem(`${PREFIX}:rebase-check:prioritized`, s.taskId);
          await fair.release("a", admission.slot);
        }
        expect(await fair.rebase()).toBe(2);
        expect((await queue.getPrioritized(0, -1)).map((j) => [j.id, j.priority])).toEqual([
          ["r4", 2],
          ["r5", 3],
        ]);
      } finally {
        await queue.close();
      }
    } finally {
      await client.close();
      redis.disconnect();
    }
  }, 150_000);
  it("adds a group after every master forgot its scripts (a SCRIPT FLUSH, a restart): its tasks run", async () => {
    const client = new AgentryClient({ url: cluster.url, prefix: PREFIX });
    try {
      // BullMQ is loaded on the client's connection before the flush, so its flow's MULTI meets
      // NOSCRIPT and the client loads the scripts again: on the master of the flow's slot.
      await client.submit({ prompt: "What is the weather in Oslo?" }, { tenant: "acme" });
      for (const port of cluster.ports) {
        const node = createRedis({ url: `redis://127.0.0.1:${port}`, role: "command" });
        await node.script("FLUSH").finally(() => node.disconnect());
      }
      // The add of a group meets the lost scripts inside BullMQ's MULTI: it is refused with a
      // typed error saying to send it again, at most once, and the group sent again is added.
      const group = () =>
        client.submitGroup(
          [{ prompt: "What is the weather in Paris?" }, { prompt: "What is the weather in Rome?" }],
          { tenant: "acme" },
        );
      const first = await group().catch((err: unknown) => err);
      let taskIds: string[];
      if (first instanceof Error) {
        expect(AgentryError.isInstance(first) && first.code).toBe("REDIS_UNAVAILABLE");
        expect(first.message).toContain("submit the group again");
        ({ taskIds } = await group());
      } else ({ taskIds } = first as { taskIds: string[] });
      const results = await Promise.all(taskIds.map((id) => client.wait(id, { timeoutMs: 60_000 })));
      expect(results.map((r) => r.steps > 0)).toEqual([true, true]);
    } finally {
      await client.close();
    }
  }, 120_000);
});
