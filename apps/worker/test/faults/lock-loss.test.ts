import { rmSync } from "node:fs";
import { describe, it, type ExpectStatic, type TestContext } from "vitest";
import { Redis } from "ioredis";
import { ApprovalStore, loadApproversFile } from "@agentry/governance";
import { createTestApprovers } from "@agentry/governance/testing";
import { startRedisServer } from "@agentry/testkit";
import { APPROVAL_POLICY, demo, startFaultCluster, writeTempFile, type FaultCluster } from "./harness.js";

// Redis (AOF, appendfsync always) stops while a task attempt is mid model call or mid approved
// tool call, and comes back after 3, 12 or 25 s. The job lock lives 10 s (the production
// default): a 3 s outage keeps it, 12 and 25 s outages lose it, another worker takes the task
// while the stale attempt is still running. Whatever happens, the task commits once: one tool
// run, one `response` and one `approval_decided` entry, an answer that tells the truth, and a
// ledger that equals what the provider billed.

const PRODUCTION_LOCK = {
  AGENTRY_LOCK_DURATION_MS: "10000",
  AGENTRY_STALLED_INTERVAL_MS: "5000",
  AGENTRY_BUDGET_LEASE_MS: "120000",
};
/** How long the model takes to answer the call Redis dies under, and how long the delete's side effect takes. */
const MODEL_DELAY_MS = 1_500;
const TOOL_DELAY_MS = 2_000;

interface World {
  cluster: FaultCluster;
  conn: Redis;
  /** Kills Redis now; it comes back on the same port and data directory after `outageMs`. */
  outage(outageMs: number): Promise<{ killedAt: number }>;
}

async function startWorld(
  /** The test's own hook: under describe.concurrent the imported one may find no current test after an await. */
  onTestFinished: TestContext["onTestFinished"],
  name: string,
  options: {
    policy?: string;
    env?: Record<string, string>;
    onModelRequest?: (n: number) => void;
    approversFile?: string;
  },
): Promise<World> {
  let server = await startRedisServer({ appendonly: true });
  const { port, dir, url } = server;
  const conn = new Redis(url, { maxRetriesPerRequest: null });
  conn.on("error", () => undefined);
  let modelCalls = 0;
  const cluster = await startFaultCluster({
    redisUrl: url,
    prefix: `faults-lock-${name}`,
    conn,
    ...(options.policy ? { policyFile: writeTempFile("policy.yaml", options.policy) } : {}),
    env: {
      ...PRODUCTION_LOCK,
      ...(options.approversFile ? { AGENTRY_APPROVERS_FILE: options.approversFile } : {}),
      ...options.env,
    },
    reply: (req) => {
      modelCalls += 1;
      options.onModelRequest?.(modelCalls);
      return demo(req, { delayMs: MODEL_DELAY_MS });
    },
  });
  onTestFinished(async () => {
    await cluster.close();
    conn.disconnect();
    await server.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    cluster,
    conn,
    async outage(outageMs) {
      const killedAt = Date.now();
      await server.kill();
      await new Promise((r) => setTimeout(r, outageMs));
      server = await startRedisServer({ appendonly: true, port, dir });
      return { killedAt };
    },
  };
}

/** Counts per task of the audit entries of one type. */
function countsPerTask(entries: { type: string; taskId?: string }[], type: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of entries)
    if (e.type === type && e.taskId) counts.set(e.taskId, (counts.get(e.taskId) ?? 0) + 1);
  return counts;
}

/** Lines of every worker that mention the task, for failure messages. */
function trail(c: FaultCluster, taskId: string): string {
  return c.workers
    .flatMap((w) =>
      w
        .output()
        .split("\n")
        .filter((l) => l.includes(taskId))
        .map((l) => `${w.name}: ${l}`),
    )
    .join("\n");
}

async function assertCommittedOnce(
  expect: ExpectStatic,
  c: FaultCluster,
  taskId: string,
  expect_: { decided: boolean },
): Promise<string> {
  // The client fails fast while Redis is away (the outage may still run when this starts): a
  // caller retries REDIS_UNAVAILABLE until Redis is back, as a producer's caller would.
  const deadline = Date.now() + 120_000;
  const waitOnce = (): ReturnType<typeof c.client.wait> =>
    c.client.wait(taskId, { timeoutMs: Math.max(1, deadline - Date.now()) }).catch(async (err: unknown) => {
      if ((err as { code?: string }).code === "REDIS_UNAVAILABLE" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        return waitOnce();
      }
      throw new Error(`task ${taskId} did not complete:\n${trail(c, taskId)}`, { cause: err });
    });
  const result = await waitOnce();
  const entries = await c.auditEntries();
  expect(
    countsPerTask(entries, "response").get(taskId),
    `response entries of ${taskId}\n${trail(c, taskId)}`,
  ).toBe(1);
  expect(countsPerTask(entries, "request").get(taskId)).toBe(1);
  if (expect_.decided)
    expect(
      countsPerTask(entries, "approval_decided").get(taskId),
      `approval_decided entries\n${trail(c, taskId)}`,
    ).toBe(1);
  expect((await c.audit.verify()).ok).toBe(true);
  // Every model call the provider billed is in the ledger, once: reservations of the stale
  // attempt settled at their real usage, none left open, none reaped at the reserved amount.
  await expect
    .poll(async () => (await c.ledger.getStats("global")).reserved.tokens, { timeout: 30_000 })
    .toBe(0);
  expect((await c.ledger.getStats("global")).used.tokens).toBe(c.fake.billed().tokens);
  return result.text;
}

describe.concurrent("an attempt that lost its job lock changes nothing", () => {
  for (const outageMs of [3_000, 12_000, 25_000]) {
    it(`Redis away ${outageMs / 1000} s during a model call: one answer, ledger = billed`, async ({
      expect,
      onTestFinished,
    }) => {
      let killed: Promise<{ killedAt: number }> | undefined;
      const ref: { world?: World } = {};
      let requestAt = 0;
      const world = await startWorld(onTestFinished, `model-${outageMs}`, {
        onModelRequest: (n) => {
          // The first model call of the task: Redis dies while the provider is still answering.
          const world = ref.world;
          if (n === 1 && world) {
            requestAt = Date.now();
            killed = world.outage(outageMs);
          }
        },
      });
      ref.world = world;
      const c = world.cluster;
      await Promise.all([c.startWorker(`m${outageMs}-a`), c.startWorker(`m${outageMs}-b`)]);
      const taskId = await c.submit("What's the weather in Lisbon?");
      await expect.poll(() => killed !== undefined, { timeout: 60_000 }).toBe(true);
      const { killedAt } = await (killed as Promise<{ killedAt: number }>);
      // Precondition: Redis went down while the model call was in flight.
      expect(killedAt - requestAt).toBeLessThan(MODEL_DELAY_MS);
      const text = await assertCommittedOnce(expect, c, taskId, { decided: false });
      expect(text).toMatch(/^In Lisbon it is -?\d+°C and [a-z ]+\.$/);
      if (outageMs > 10_000) {
        // Precondition of the long outages: the lock was lost and the stale attempt was stopped.
        expect(
          c.workers.some(
            (w) =>
              w.output().includes('"event":"task-attempt-fenced"') ||
              w.output().includes('"event":"task-lock-lost"'),
          ),
          trail(c, taskId),
        ).toBe(true);
      }
    }, 240_000);

    it(`Redis away ${outageMs / 1000} s during an approved tool call: one deletion, a truthful answer`, async ({
      expect,
      onTestFinished,
    }) => {
      const approvers = createTestApprovers(["alice"]);
      const approversFile = writeTempFile("approvers", approvers.fileText);
      const world = await startWorld(onTestFinished, `tool-${outageMs}`, {
        policy: APPROVAL_POLICY,
        approversFile,
        env: { AGENTRY_TOOL_DELAY_MS: String(TOOL_DELAY_MS), AGENTRY_TOOL_TIMEOUT_MS: "60000" },
      });
      const c = world.cluster;
      await Promise.all([c.startWorker(`t${outageMs}-a`), c.startWorker(`t${outageMs}-b`)]);
      const store = new ApprovalStore({
        redis: world.conn,
        prefix: c.prefix,
        approverKeys: loadApproversFile(approversFile),
        audit: c.audit,
      });
      const taskId = await c.submit("delete db-9 in staging");
      await expect
        .poll(async () => (await store.list({ status: "pending" })).length, { timeout: 60_000 })
        .toBe(1);
      const [approval] = await store.list({ status: "pending" });
      expect((await store.decide(approvers.sign("alice", approval!.id, "approve"))).type).toBe("decided");
      // The resumed attempt runs the delete: its side effect is recorded, then it takes
      // TOOL_DELAY_MS to answer. Redis dies in between.
      await expect.poll(async () => (await c.deletions()).length, { timeout: 60_000, interval: 20 }).toBe(1);
      const seenAt = Date.now();
      const { killedAt } = await world.outage(outageMs);
      expect(killedAt - seenAt).toBeLessThan(TOOL_DELAY_MS); // precondition: mid tool call
      const text = await assertCommittedOnce(expect, c, taskId, { decided: true });
      expect((await c.deletions()).filter((d) => d.taskId === taskId)).toHaveLength(1);
      // The answer reports the deletion that happened, not an interrupted call.
      expect(text).toBe("Done: db-9 was deleted in staging (simulated).");
      if (outageMs > 10_000) {
        expect(
          c.workers.some(
            (w) =>
              w.output().includes('"event":"task-attempt-fenced"') ||
              w.output().includes('"event":"task-lock-lost"'),
          ),
          trail(c, taskId),
        ).toBe(true);
      }
    }, 240_000);
  }
});
