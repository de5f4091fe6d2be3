import { rmSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { ApprovalStore, AuditLog, loadApproversFile } from "@agentry/governance";
import { createTestApprovers } from "@agentry/governance/testing";
import { startRedisServer } from "@agentry/testkit";
import {
  APPROVAL_POLICY,
  demo,
  eventually,
  startFaultCluster,
  startProducerProcess,
  writeTempFile,
  type FaultCluster,
  type ProducerProcess,
} from "./harness.js";

// Redis itself dies (kill -9) in the middle of a run and comes back on the same port and data
// directory (AOF, appendfsync always, as the production config). Workers, the producer process
// and the client reconnect by themselves; no task, approval or audit entry is lost.

type Server = Awaited<ReturnType<typeof startRedisServer>>;
let server: Server | undefined;
let cluster: FaultCluster | undefined;
let producer: ProducerProcess | undefined;
const conns: Redis[] = [];
afterEach(async () => {
  await producer?.kill();
  await cluster?.close();
  for (const c of conns.splice(0)) c.disconnect();
  if (server) {
    await server.kill();
    rmSync(server.dir, { recursive: true, force: true });
  }
  producer = cluster = server = undefined;
});

// As deployed by default, and with three queue shards, an audit lane per worker process and
// budget allowances (returned to the ledger once Redis is back: the ledger still equals billed).
describe.each([
  { shards: 1, lanes: 1, allowances: 0 },
  { shards: 3, lanes: 3, allowances: 4 },
])(
  "Redis restart, AGENTRY_SHARDS=$shards, AGENTRY_AUDIT_LANES=$lanes, AGENTRY_BUDGET_ALLOWANCE_CALLS=$allowances",
  ({ shards, lanes, allowances }) => {
    it("loses no task, approval or audit entry, and everything reconnects by itself", async () => {
      server = await startRedisServer({ appendonly: true });
      const { port, dir, url } = server;
      const conn = new Redis(url, { maxRetriesPerRequest: null });
      conn.on("error", () => undefined);
      conns.push(conn);
      const approvers = createTestApprovers(["alice"]);
      const approversFile = writeTempFile("approvers", approvers.fileText);
      const prefix = `faults-restart-${shards}`;
      cluster = await startFaultCluster({
        redisUrl: url,
        prefix,
        conn,
        shards,
        auditLanes: lanes,
        policyFile: writeTempFile("policy.yaml", APPROVAL_POLICY),
        env: { AGENTRY_APPROVERS_FILE: approversFile, AGENTRY_BUDGET_ALLOWANCE_CALLS: String(allowances) },
        // Slow enough that tasks are mid-run when Redis dies.
        reply: (req) => demo(req, { delayMs: 400 }),
      });
      const c = cluster;
      await Promise.all([c.startWorker("r1"), c.startWorker("r2")]);
      const apiKeysFile = writeTempFile("api-keys", "restart-key=acme\n");
      producer = await startProducerProcess({
        REDIS_URL: url,
        AGENTRY_PREFIX: prefix,
        AGENTRY_SHARDS: String(shards),
        AGENTRY_API_KEYS_FILE: apiKeysFile,
      });
      const p = producer;
      const postTask = async (prompt: string) => {
        const res = await fetch(`${p.url}/v1/tasks`, {
          method: "POST",
          headers: { authorization: "Bearer restart-key", "content-type": "application/json" },
          body: JSON.stringify({ prompt }),
        });
        if (res.status !== 202) throw new Error(`POST /v1/tasks answered ${res.status}: ${await res.text()}`);
        return ((await res.json()) as { taskId: string }).taskId;
      };

      // Before: two deletes waiting for approval, and a batch of tasks in flight. Approvals live on
      // their task's shard: one store per shard, as the CLI reads them.
      const stores = c.shardPrefixes.map(
        (p) =>
          new ApprovalStore({
            redis: conn,
            prefix: p,
            approverKeys: loadApproversFile(approversFile),
            audit: new AuditLog({ redis: conn, prefix: p }),
          }),
      );
      const store = {
        list: async (q: { status: "pending" }) => (await Promise.all(stores.map((s) => s.list(q)))).flat(),
        get: async (id: string) => {
          for (const s of stores) {
            const record = await s.get(id);
            if (record) return record;
          }
          return undefined;
        },
        decide: async (vote: Parameters<ApprovalStore["decide"]>[0]) => {
          for (const s of stores) if (await s.get(vote.approvalId)) return s.decide(vote);
          throw new Error(`no shard holds approval ${vote.approvalId}`);
        },
      };
      const deletes = [await c.submit("delete db-a in staging"), await postTask("delete db-b in staging")];
      await expect
        .poll(async () => (await store.list({ status: "pending" })).length, { timeout: 60_000 })
        .toBe(2);
      const running: string[] = [];
      for (let i = 0; i < 4; i++) running.push(await c.submit(`What's the weather in Before${i}?`));
      for (let i = 0; i < 4; i++) running.push(await postTask(`What's the weather in Via${i}?`));
      const firstCalls = c.modelRequests().length;
      await expect
        .poll(() => c.modelRequests().length - firstCalls, { timeout: 30_000 })
        .toBeGreaterThanOrEqual(4);

      // Everything acknowledged so far must survive: with appendfsync always it is on disk.
      const chainsNow = () => Promise.all(c.audits.map((a) => conn.xrange(a.streamKey, "-", "+")));
      const auditBefore = await chainsNow();
      const pendingBefore = (await store.list({ status: "pending" })).map((a) => a.id).sort();
      // Precondition: tasks are mid-run when Redis dies (some started, not all of them finished).
      const finishedBefore = (await c.auditEntries()).filter(
        (e) => e.type === "response" && running.includes(e.taskId ?? ""),
      ).length;
      expect(finishedBefore).toBeLessThan(running.length);
      await server.kill();
      await new Promise((r) => setTimeout(r, 1_500));
      server = await startRedisServer({ appendonly: true, port, dir });

      // After: new submissions through the client and through the producer work again...
      const after: string[] = [];
      for (let i = 0; i < 3; i++)
        after.push(await eventually(() => c.submit(`What's the weather in After${i}?`)));
      for (let i = 0; i < 3; i++)
        after.push(await eventually(() => postTask(`What's the weather in Later${i}?`)));
      // ...and the approvals pending before the restart are still there and decidable.
      expect((await eventually(() => store.list({ status: "pending" }))).map((a) => a.id).sort()).toEqual(
        pendingBefore,
      );
      for (const id of pendingBefore) {
        const decided = await store.decide(approvers.sign("alice", id, "approve"));
        expect(decided.type).toBe("decided");
      }

      // The workers did see Redis go away (and came back without a restart of their own).
      expect(
        c.workers.every((w) => w.output().includes("redis connection error") && w.child.exitCode === null),
      ).toBe(true);
      const all = [...deletes, ...running, ...after];
      const results = await Promise.all(
        all.map((id) =>
          c.client.wait(id, { timeoutMs: 60_000 }).catch(async (err: unknown) => {
            const job = await c.client.queue.getJob(id);
            const lines = c.workers.flatMap((w) =>
              w
                .output()
                .split("\n")
                .filter((l) => l.includes(id))
                .map((l) => `${w.name}: ${l}`),
            );
            throw new Error(
              `${id} stuck in ${await job?.getState()} ${JSON.stringify({ data: job?.data, opts: job?.opts, attemptsMade: job?.attemptsMade, failedReason: job?.failedReason, stacktrace: job?.stacktrace })}\n${lines.join("\n")}\n${p
                .output()
                .split("\n")
                .filter((l) => l.includes(id))
                .join("\n")}`,
              { cause: err },
            );
          }),
        ),
      );
      expect(results).toHaveLength(all.length);
      for (const id of all) expect((await c.client.status(id)).state).toBe("completed");
      if (shards > 1) {
        // Preconditions of the sharded run: tasks on several shards, entries on the workers' lanes.
        const used = new Set(await Promise.all(all.map(async (id) => (await c.client.locate(id))?.index)));
        expect(used.size).toBeGreaterThan(1);
        const onLanes = await Promise.all(c.audits.filter((a) => a.lane > 0).map((a) => a.readHead()));
        expect(onLanes.some((h) => h.seq > 0)).toBe(true);
      }
      // Each approved delete ran exactly once.
      expect((await c.deletions()).map((d) => d.taskId).sort()).toEqual([...deletes].sort());

      // Every audit chain kept every entry written before the crash, unchanged, and verifies.
      const auditAfter = await chainsNow();
      expect(auditAfter.flat().length).toBeGreaterThan(auditBefore.flat().length);
      for (const [i, before] of auditBefore.entries())
        expect(auditAfter[i]?.slice(0, before.length)).toEqual(before);
      for (const a of c.audits) expect(await a.verify(), a.streamKey).toMatchObject({ ok: true });
      // Nothing was lost (AOF, fsync always), so no worker said its chain went back.
      for (const w of c.workers) expect(w.output(), w.name).not.toContain('"event":"audit-chain-rewound"');
      // Exactly one response per task, counted per task (a set would hide a task answered twice).
      const responses = (await c.auditEntries()).filter((e) => e.type === "response");
      for (const id of all)
        expect(
          responses.filter((e) => e.taskId === id),
          `response entries of ${id}`,
        ).toHaveLength(1);
      expect(responses).toHaveLength(all.length);
      const decided = (await c.auditEntries()).filter((e) => e.type === "approval_decided");
      for (const id of deletes)
        expect(
          decided.filter((e) => e.taskId === id),
          `approval_decided entries of ${id}`,
        ).toHaveLength(1);
      // Every model call the provider billed is in the ledger once: a retried call is billed (and
      // charged) again, never charged without being billed.
      await expect
        .poll(async () => (await c.ledger.getStats("global")).reserved.tokens, { timeout: 30_000 })
        .toBe(0);
      expect((await c.ledger.getStats("global")).used.tokens).toBe(c.fake.billed().tokens);
      for (const id of pendingBefore) expect((await store.get(id))?.status).toBe("approved");
      // A reservation caught by the crash is settled by the reaper once its lease ran out.
    }, 200_000);
  },
);
