import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { Redis } from "ioredis";
import { createRedis, shardPrefixes } from "@agentry/core";
import { RedisSessionTurns } from "@agentry/memory";
import {
  AgentryClient,
  BudgetLedger,
  ShardedBudget,
  type BudgetScope,
  type ClientShard,
} from "@agentry/runtime";
import {
  ApprovalStore,
  AuditLog,
  anchorChains,
  verifyChainsWithAnchors,
  type AuditEntry,
} from "@agentry/governance";
import { createTestApprovers, type TestApprovers } from "@agentry/governance/testing";
import { fakeReply, startFakeAnthropic, type FakeAnthropic, type RecordedRequest } from "@agentry/testkit";
import { referenceReply } from "@agentry/reference/testing";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";

/** Shards of the deployments these tests start. */
export const SHARDS = 3;
/** Audit lanes: one per worker process (three) and one for the test's own writes. */
export const LANES = 4;
const AUDIT_KEY = "k".repeat(40);

/**
 * A deployment with `AGENTRY_SHARDS=3` and `AGENTRY_AUDIT_LANES=4`: three worker processes (two
 * consume every shard, one only shards 0 and 2; each writes its own audit lane), a client as the
 * producer wires it, the fake Messages API and enrolled approvers. The same scenario runs on one Redis server and on a three-master Redis Cluster.
 */
export interface ShardedDeployment {
  url: string;
  prefix: string;
  shardPrefixes: string[];
  fake: FakeAnthropic;
  approvers: TestApprovers;
  workers: WorkerProcess[];
  client: AgentryClient;
  conn: Redis;
  /** Model calls of `hold` prompts in flight now, and their peak. */
  held: { inFlight: number; peak: number };
  /** The audit chains: the global one, then each shard's; each in every lane, lane 0 first. */
  audits: AuditLog[];
  /** Every lane of the chain of `shard`. */
  shardChain(shard: number): AuditLog[];
  dir: string;
  close(): Promise<void>;
}

export async function startShardedDeployment(url: string, prefix: string): Promise<ShardedDeployment> {
  // `hold` prompts are answered after a pause, counting the calls in flight; the rest by the
  // reference rules.
  const held = { inFlight: 0, peak: 0 };
  const isHold = (request: RecordedRequest) =>
    JSON.stringify(request.body.messages ?? []).includes("hold on");
  const fake = await startFakeAnthropic({
    handler: (request) => {
      if (!isHold(request)) return referenceReply(request);
      held.inFlight += 1;
      held.peak = Math.max(held.peak, held.inFlight);
      return fakeReply.text("held", { delayMs: 150 });
    },
    onResponseClosed: (request) => {
      if (isHold(request)) held.inFlight -= 1;
    },
  });
  const approvers = createTestApprovers(["alice"]);
  const dir = mkdtempSync(join(tmpdir(), "agentry-shards-"));
  writeFileSync(join(dir, "approvers"), approvers.fileText);
  const env: Record<string, string> = {
    REDIS_URL: url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_SHARDS: String(SHARDS),
    AGENTRY_AUDIT_LANES: String(LANES),
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_APPROVERS_FILE: join(dir, "approvers"),
    AGENTRY_AUDIT_KEY: AUDIT_KEY,
    AGENTRY_CONCURRENCY: "4",
    AGENTRY_RECONCILE_INTERVAL_MS: "1000",
    // Budget allowances, as a sharded deployment would run them: calls draw from each process's
    // share, so the global slot is not touched twice per model call.
    AGENTRY_BUDGET_ALLOWANCE_CALLS: "4",
  };
  const workers = [
    startWorkerProcess("shards-all-1", env),
    startWorkerProcess("shards-all-2", env),
    startWorkerProcess("shards-0-2", { ...env, AGENTRY_WORKER_SHARDS: "0,2" }),
  ];
  await Promise.all(workers.map((w) => waitStarted(w, 60_000)));
  const conn = createRedis({ url, role: "command" });
  const client = new AgentryClient({
    url,
    prefix,
    shards: SHARDS,
    sessionOrder: (p) => new RedisSessionTurns({ redis: conn, prefix: p }),
  });
  const prefixes = shardPrefixes(prefix, SHARDS);
  const lanesOf = (p: string) =>
    Array.from(
      { length: LANES },
      (_, lane) => new AuditLog({ redis: conn, prefix: p, lane, key: AUDIT_KEY }),
    );
  const audits = [prefix, ...prefixes].flatMap(lanesOf);
  return {
    url,
    prefix,
    shardPrefixes: prefixes,
    fake,
    approvers,
    workers,
    client,
    conn,
    held,
    audits,
    shardChain: (shard) => audits.slice((shard + 1) * LANES, (shard + 2) * LANES),
    dir,
    async close() {
      await Promise.all(workers.map((w) => w.kill()));
      await client.close();
      await fake.close();
      conn.disconnect();
    },
  };
}

/** A session id of `tenant` whose tasks go to `shard`. */
export function sessionOn(client: AgentryClient, tenant: string, shard: number, label: string): string {
  for (let i = 0; ; i++) {
    const id = `${label}-${i}`;
    if (client.shardFor(tenant, id).index === shard) return id;
  }
}

/** Every audit entry of every chain. */
async function allEntries(d: ShardedDeployment): Promise<AuditEntry[]> {
  return (await Promise.all(d.audits.map((a) => a.read({ count: 100_000 })))).flat();
}

/** A task's audit entries on its shard's chain, every lane, in time order. */
async function taskEntries(d: ShardedDeployment, shard: number, taskId: string): Promise<AuditEntry[]> {
  const lanes = await Promise.all(d.shardChain(shard).map((l) => l.read({ taskId, count: 1_000 })));
  return lanes.flat().sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
}

/**
 * Tasks of many sessions, spread over every shard, complete once each, and each session's tasks
 * run one after another in submit order.
 */
export async function manySessionsCompleteInOrder(d: ShardedDeployment): Promise<void> {
  const sessions = Array.from({ length: 12 }, (_, i) => `order-${i}`);
  const bySession = new Map<string, string[]>(sessions.map((s) => [s, []]));
  for (let round = 0; round < 3; round++)
    for (const s of sessions)
      bySession
        .get(s)
        ?.push(
          (
            await d.client.submit(
              { prompt: `What's the weather in C${round}?`, sessionId: s },
              { tenant: "acme" },
            )
          ).taskId,
        );
  const ids = [...bySession.values()].flat();
  // Precondition: the sessions landed on every shard.
  const shards = new Set(await Promise.all(ids.map(async (id) => (await d.client.locate(id))?.index)));
  expect(shards).toEqual(new Set([0, 1, 2]));
  const results = await Promise.all(ids.map((id) => d.client.wait(id, { timeoutMs: 120_000 })));
  expect(results.every((r) => r.steps === 2)).toBe(true);
  // Once each: one response entry per task, across the chains.
  const responses = (await allEntries(d)).filter(
    (e) => e.type === "response" && ids.includes(e.taskId ?? ""),
  );
  expect(responses.map((e) => e.taskId).sort()).toEqual([...ids].sort());
  // Session order: a session's task made its first model call only after the previous one
  // answered. A session's entries are on its shard's chain, spread over the lanes of the workers
  // that ran them: between lanes only their time orders them (one host, one clock; ms apart or equal).
  for (const taskIds of bySession.values()) {
    const shard = (await d.client.locate(taskIds[0] as string)) as ClientShard;
    const entries = await Promise.all(taskIds.map((id) => taskEntries(d, shard.index, id)));
    for (let i = 1; i < entries.length; i++) {
      const answered = entries[i - 1]?.find((e) => e.type === "response")?.ts ?? "~";
      const firstCall = entries[i]?.find((e) => e.type === "decision")?.ts ?? "";
      expect(firstCall >= answered, `${firstCall} after ${answered}`).toBe(true);
    }
  }
  // Each worker process wrote a lane of its own.
  const owners = await Promise.all(
    Array.from({ length: LANES - 1 }, (_, i) => d.conn.get(`${d.prefix}:audit:lane:${i + 1}:owner`)),
  );
  expect(owners.sort()).toEqual(d.workers.map((w) => w.name).sort());
  // Work ran in every worker process.
  for (const w of d.workers) expect(w.output()).toContain('"event":"task-completed"');
}

/** An approval of a task on shard 1 (a shard not every worker consumes) resumes its task once approved. */
export async function approvalOnAShardResumes(d: ShardedDeployment): Promise<void> {
  const session = sessionOn(d.client, "acme", 1, "approve");
  const { taskId } = await d.client.submit(
    { prompt: "delete db-7 in staging", sessionId: session },
    { tenant: "acme" },
  );
  expect((await d.client.locate(taskId))?.index).toBe(1);
  await expect
    .poll(async () => (await d.client.status(taskId)).state, { timeout: 60_000 })
    .toBe("awaiting_approval");
  const [approvalId] = (await d.client.status(taskId)).approvalIds ?? [];
  const shardPrefix = d.shardPrefixes[1] as string;
  // The approval lives on the task's shard, not on the others.
  expect(
    await new ApprovalStore({ redis: d.conn, prefix: d.shardPrefixes[0] as string }).get(
      approvalId as string,
    ),
  ).toBeUndefined();
  const store = new ApprovalStore({
    redis: d.conn,
    prefix: shardPrefix,
    approverKeys: d.approvers.keys,
    audit: new AuditLog({ redis: d.conn, prefix: shardPrefix, key: AUDIT_KEY }),
  });
  expect(await store.decide(d.approvers.sign("alice", approvalId as string, "approve"))).toMatchObject({
    type: "decided",
    status: "approved",
  });
  const done = await d.client.wait(taskId, { timeoutMs: 60_000 });
  expect(done.text).toContain("db-7");
  const entries = await taskEntries(d, 1, taskId);
  expect(entries.map((e) => e.type)).toEqual(
    expect.arrayContaining(["approval_requested", "approval_decided", "action", "response"]),
  );
}

/** Status and cancel find a task on its shard: a task parked on shard 2 is cancelled, its approval too, and its session's next task runs. */
export async function cancelAndStatusOnAShard(d: ShardedDeployment): Promise<void> {
  const session = sessionOn(d.client, "acme", 2, "cancel");
  const parked = await d.client.submit(
    { prompt: "delete db-8 in staging", sessionId: session },
    { tenant: "acme" },
  );
  const next = await d.client.submit(
    { prompt: "What's the weather in Rome?", sessionId: session },
    { tenant: "acme" },
  );
  await expect
    .poll(async () => (await d.client.status(parked.taskId)).state, { timeout: 60_000 })
    .toBe("awaiting_approval");
  const [approvalId] = (await d.client.status(parked.taskId)).approvalIds ?? [];
  expect(await d.client.cancel(parked.taskId)).toEqual({ cancelled: true, state: "awaiting_approval" });
  await expect(d.client.status(parked.taskId)).rejects.toMatchObject({ code: "NOT_FOUND" });
  const store = new ApprovalStore({ redis: d.conn, prefix: d.shardPrefixes[2] as string });
  await expect
    .poll(async () => (await store.get(approvalId as string))?.status, { timeout: 30_000 })
    .toBe("cancelled");
  expect((await d.client.wait(next.taskId, { timeoutMs: 60_000 })).text).toContain("Rome");
  expect((await d.client.status(next.taskId)).state).toBe("completed");
  await expect(d.client.status("task_0123456789abcdef0123456789abcdef")).rejects.toMatchObject({
    code: "NOT_FOUND",
  });
  // An idempotent resubmit naming another session still finds the task, on its shard.
  const first = await d.client.submit(
    { prompt: "hi", idempotencyKey: "k-1", sessionId: sessionOn(d.client, "acme", 0, "idem") },
    { tenant: "acme" },
  );
  const again = await d.client.submit(
    { prompt: "hi", idempotencyKey: "k-1", sessionId: sessionOn(d.client, "acme", 1, "idem") },
    { tenant: "acme" },
  );
  expect(again).toEqual({ ...first, deduplicated: true });
}

/** A tenant's maxRunning holds across shards: never more of its tasks running than the cap in total. */
export async function tenantCapHoldsAcrossShards(d: ShardedDeployment): Promise<void> {
  await d.client.setTenantSettings("capped", { maxRunning: 2 });
  const ids: string[] = [];
  for (let i = 0; i < 15; i++)
    ids.push(
      (await d.client.submit({ prompt: `hold on ${i}`, sessionId: `capped-${i}` }, { tenant: "capped" }))
        .taskId,
    );
  const shards = new Set(await Promise.all(ids.map(async (id) => (await d.client.locate(id))?.index)));
  expect(shards).toEqual(new Set([0, 1, 2]));
  const samples: number[] = [];
  const sampling = setInterval(() => {
    void d.client.tenantLoad(["capped"]).then(
      ([load]) => samples.push(load?.running ?? 0),
      () => undefined,
    );
  }, 50);
  try {
    await Promise.all(ids.map((id) => d.client.wait(id, { timeoutMs: 120_000 })));
  } finally {
    clearInterval(sampling);
  }
  // Exactly the cap: the peak of the tenant's model calls in flight at once, over all shards.
  expect(d.held.peak).toBe(2);
  expect(Math.max(...samples)).toBeLessThanOrEqual(2);
  await expect
    .poll(() => d.client.tenantLoad(["capped"]), { timeout: 30_000 })
    .toEqual([{ tenant: "capped", maxRunning: 2, weight: 1, running: 0, waiting: 0 }]);
}

/**
 * One global budget shared by every shard, drawn as allowances by three worker processes: under
 * contention from all of them the ledger never goes past the limit, and once the allowances are
 * returned it equals what the provider billed.
 */
export async function globalBudgetHoldsAcrossShards(d: ShardedDeployment): Promise<void> {
  const ledger = new BudgetLedger({ redis: d.conn, prefix: d.prefix });
  // A limit holds for what is drawn after it is set: the allowances the earlier tests' calls
  // drew come back first (idle within a second), so their usage is settled before the limit.
  await expect
    .poll(async () => (await ledger.getStats("global")).reserved.tokens, { timeout: 30_000 })
    .toBe(0);
  // What a task costs so far, to set a limit a burst of tasks overruns about three times.
  const before = (await ledger.getStats("global")).used.tokens;
  const perTask = Math.max(1, Math.ceil(before / Math.max(1, d.fake.requests.length / 2)));
  const tasks = 45;
  const limit = Math.max(4_000, before + Math.floor((perTask * tasks) / 3));
  await ledger.setLimit("global", { maxTokens: limit, period: "none" });
  const ids: string[] = [];
  for (let i = 0; i < tasks; i++)
    ids.push(
      (
        await d.client.submit(
          { prompt: `What's the weather in B${i}?`, sessionId: `budget-${i}` },
          { tenant: `t${i % 3}` },
        )
      ).taskId,
    );
  const outcomes = await Promise.all(
    ids.map((id) =>
      d.client.wait(id, { timeoutMs: 180_000 }).then(
        () => "completed",
        (err: { code?: string }) => err.code ?? "error",
      ),
    ),
  );
  // Demand exceeded the limit: some tasks were refused for budget, some completed.
  expect(outcomes).toContain("BUDGET_EXCEEDED");
  expect(outcomes).toContain("completed");
  // The workers' allowances go back within a second of their last call; until then they are
  // reserved, and nothing is ever past the limit.
  const stats = await ledger.getStats("global");
  expect(stats.used.tokens + stats.reserved.tokens).toBeLessThanOrEqual(limit);
  await expect
    .poll(async () => (await ledger.getStats("global")).reserved.tokens, { timeout: 30_000 })
    .toBe(0);
  const returned = await ledger.getStats("global");
  expect(returned.used.tokens).toBeLessThanOrEqual(limit);
  expect(returned.used.tokens).toBe(d.fake.billed().tokens);
}

/**
 * A session's budget lives on its session's shard: its limit holds there (the tasks of the
 * session past it are refused), the shard's ledger ends equal to what the provider billed for
 * them, and the global slot holds nothing of the session.
 */
export async function sessionBudgetOnItsShard(d: ShardedDeployment): Promise<void> {
  const global = new BudgetLedger({ redis: d.conn, prefix: d.prefix });
  const book = new ShardedBudget(
    global,
    d.shardPrefixes.map((p) => new BudgetLedger({ redis: d.conn, prefix: p })),
  );
  const sessionId = sessionOn(d.client, "acme", 2, "budgeted");
  const scope: BudgetScope = `tenant:acme:session:${sessionId}`;
  const home = book.ledgerFor(scope);
  expect(home).not.toBe(global);
  await expect
    .poll(async () => (await global.getStats("global")).reserved.tokens, { timeout: 30_000 })
    .toBe(0);
  // The global limit an earlier test spent stands in the way of every scope: lifted.
  await global.removeLimit("global");
  const billedBefore = d.fake.billed().tokens;
  const limit = 4_000;
  await book.setLimit(scope, { maxTokens: limit, period: "none" });
  const ids: string[] = [];
  for (let i = 0; i < 8; i++)
    ids.push(
      (await d.client.submit({ prompt: `What's the weather in S${i}?`, sessionId }, { tenant: "acme" }))
        .taskId,
    );
  const outcomes: string[] = [];
  for (const id of ids)
    outcomes.push(
      await d.client.wait(id, { timeoutMs: 120_000 }).then(
        () => "completed",
        (err: { code?: string }) => err.code ?? "error",
      ),
    );
  expect(outcomes).toContain("completed");
  expect(outcomes).toContain("BUDGET_EXCEEDED");
  await expect.poll(async () => (await home.getStats(scope)).reserved.tokens, { timeout: 30_000 }).toBe(0);
  const stats = await book.getStats(scope);
  expect(stats.used.tokens).toBeLessThanOrEqual(limit);
  expect(stats.used.tokens).toBe(d.fake.billed().tokens - billedBefore);
  // Nothing of the session on the global slot.
  expect(await global.getStats(scope)).toMatchObject({
    limit: null,
    used: { tokens: 0 },
    reserved: { tokens: 0 },
  });
  await book.removeLimit(scope);
}

/** One anchor line holds every chain's head (the global one and each shard's); verify checks them all. */
export async function anchorCoversEveryShard(d: ShardedDeployment): Promise<void> {
  const file = join(d.dir, "anchors");
  const anchored = await anchorChains(d.audits, file);
  if (!anchored.ok) throw new Error(`not anchored: ${JSON.stringify(anchored)}`);
  expect(anchored.anchors.map((a) => a.stream)).toEqual(d.audits.map((a) => a.streamKey));
  // Every shard's chain holds entries (on the lanes of the workers that wrote them).
  for (let shard = 0; shard < SHARDS; shard++) {
    const lanes = anchored.anchors.slice((shard + 1) * LANES, (shard + 2) * LANES);
    expect(lanes.reduce((n, a) => n + a.seq, 0)).toBeGreaterThan(0);
  }
  const lines = readFileSync(file, "utf8").trim().split("\n");
  expect(lines).toHaveLength(1);
  expect((JSON.parse(lines[0] as string) as { heads: unknown[] }).heads).toHaveLength((SHARDS + 1) * LANES);
  const verified = await verifyChainsWithAnchors(d.audits, file);
  expect(verified).toMatchObject({ ok: true, chains: (SHARDS + 1) * LANES, unanchored: [] });
  // A shard's lane cut back is caught through the shared line (the lane with the most entries).
  const heads = await Promise.all(d.shardChain(1).map(async (l) => ({ l, seq: (await l.readHead()).seq })));
  const lane = heads.sort((a, b) => b.seq - a.seq)[0]?.l as AuditLog;
  const last = await d.conn.xrevrange(lane.streamKey, "+", "-", "COUNT", 1);
  await d.conn.xdel(lane.streamKey, (last[0] as [string, string[]])[0]);
  const broken = await verifyChainsWithAnchors(d.audits, file);
  expect(broken).toMatchObject({ ok: false, stream: lane.streamKey });
}

/**
 * Registers the scenario's tests, the same on one Redis server and on a Cluster. `deployment`
 * is read when a test runs (the suite starts it in `beforeAll`).
 */
export function itRunsTheShardedScenario(
  deployment: () => ShardedDeployment,
  { manySessionsTimeoutMs = 180_000 } = {},
): void {
  it(
    "completes tasks of many sessions once each, spread over every shard, in session order",
    () => manySessionsCompleteInOrder(deployment()),
    manySessionsTimeoutMs,
  );
  it(
    "resumes a task whose approval was decided on shard 1",
    () => approvalOnAShardResumes(deployment()),
    120_000,
  );
  it(
    "finds a task's status and cancels it on its shard; an idempotent resubmit dedupes across shards",
    () => cancelAndStatusOnAShard(deployment()),
    120_000,
  );
  it("holds a tenant's maxRunning across shards", () => tenantCapHoldsAcrossShards(deployment()), 180_000);
  it(
    "keeps one global budget exact with no overshoot under contention from every shard",
    () => globalBudgetHoldsAcrossShards(deployment()),
    240_000,
  );
  it(
    "keeps a session's budget on its session's shard, exact, its limit holding",
    () => sessionBudgetOnItsShard(deployment()),
    240_000,
  );
  it(
    "anchors every shard's chain in one line and verifies them all",
    () => anchorCoversEveryShard(deployment()),
    60_000,
  );
}
