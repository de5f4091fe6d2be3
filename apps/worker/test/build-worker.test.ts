import { mkdtempSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UnrecoverableError, Worker } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger, createRedis, shardPrefixes } from "@agentry/core";
import { AgentryClient, BudgetLedger } from "@agentry/runtime";
import { lintExposition, parseExposition, promtoolCheckMetrics } from "@agentry/runtime/testing";
import { generateApproverKeyPair } from "@agentry/governance";
import { startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { buildWorker, type BuiltWorker } from "../src/build-worker.js";
import { parseWorkerConfig } from "../src/config.js";
import { startOpsServer } from "../src/http.js";
import { referenceReply } from "@agentry/reference/testing";

const redis = useTestRedis("build-worker");
const dir = mkdtempSync(join(tmpdir(), "agentry-bw-"));
writeFileSync(join(dir, "approvers"), `alice: ${generateApproverKeyPair().publicKey}\n`);
const closers: (() => Promise<unknown>)[] = [];
// The worker builds its model from the environment: the real Anthropic adapter and SDK, pointed at
// the fake Messages API (which answers by the reference tools' rule table, `referenceReply`).
let fake: FakeAnthropic;
beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: referenceReply });
  closers.push(() => fake.close());
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
});
const llmEnv = () => ({
  AGENTRY_LLM: "anthropic",
  ANTHROPIC_API_KEY: "test-key",
  ANTHROPIC_BASE_URL: fake.url,
});

describe("the reference worker, in process", () => {
  it("serves /healthz and /metrics, and counts a tool call suspended for approval", async () => {
    const prefix = redis.freshPrefix();
    const config = parseWorkerConfig({
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: prefix,
      ...llmEnv(),
      AGENTRY_APPROVERS_FILE: join(dir, "approvers"),
    });
    const built: BuiltWorker = await buildWorker(config, {
      logger: createLogger({ name: "test", level: "silent" }),
    });
    expect(built.model.provider).toBe("anthropic");
    closers.push(() => built.close());
    await built.start();
    const server = await startOpsServer({
      port: 0,
      host: "127.0.0.1",
      worker: built.worker,
      metrics: built.metrics,
    });
    closers.push(() => new Promise((resolve) => server.close(resolve)));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    // Limits on two scopes, so the budget gauges have samples in both units.
    await built.ledger.setLimit("global", {
      maxTokens: 1_000_000,
      maxCostMicroUsd: 5_000_000,
      period: "none",
    });
    await built.ledger.setLimit("tenant:acme", { maxTokens: 200_000, period: "none" });

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, redis: true, running: true });

    // A client without session order: the worker registers the task in its session itself.
    const client = new AgentryClient({ url: redis.url, prefix });
    closers.push(() => client.close());
    const weather = await client.submit({ prompt: "What's the weather in Lima?" }, { tenant: "acme" });
    expect((await client.wait(weather.taskId, { timeoutMs: 20_000 })).text).toMatch(
      /^In Lima it is -?\d+°C and [a-z ]+\.$/,
    );
    const del = await client.submit({ prompt: "delete db-3 in staging" }, { tenant: "acme" });
    await expect
      .poll(async () => (await client.status(del.taskId)).state, { timeout: 20_000 })
      .toBe("awaiting_approval");

    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(
      /agentry_tool_calls_total\{[^}]*tool="delete_resource"[^}]*decision="suspend"[^}]*\} 1/,
    );
    expect(metrics).toMatch(
      /agentry_tool_calls_total\{[^}]*tool="get_weather"[^}]*decision="allow"[^}]*\} 1/,
    );
    expect(metrics).toMatch(/agentry_tasks_total\{[^}]*outcome="awaiting_approval"[^}]*\} 1/);
    expect(metrics).toMatch(/agentry_tasks_total\{[^}]*outcome="completed"[^}]*\} 1/);
    expect(metrics).toMatch(/agentry_approvals_pending\{[^}]*\} 1/);
    // The weather task was billed: its cost in US dollars, and what is left of the budgets.
    const families = new Map(parseExposition(metrics).families.map((f) => [f.name, f]));
    const costUsd =
      families.get("agentry_cost_usd_total")?.samples.find((s) => s.labels.tenant === "acme")?.value ?? 0;
    expect(costUsd).toBeGreaterThan(0);
    expect(costUsd).toBeLessThan(1);
    const remaining = (name: string, scope: string) =>
      families.get(name)?.samples.find((s) => s.labels.scope === scope)?.value;
    const globalUsd = remaining("agentry_budget_remaining_usd", "global");
    expect(globalUsd).toBeGreaterThan(0);
    expect(globalUsd).toBeLessThanOrEqual(5);
    expect(remaining("agentry_budget_remaining_tokens", "tenant:acme")).toBeLessThan(200_000);
    expect(remaining("agentry_budget_remaining_usd", "tenant:acme")).toBeUndefined();
    // Queue depth counts jobs still to finish: the parked delete is delayed; the completed weather
    // task, which BullMQ retains, is in no series.
    const depth = Object.fromEntries(
      (families.get("agentry_queue_depth")?.samples ?? []).map((s) => [s.labels.state, s.value]),
    );
    expect(depth).toEqual({ waiting: 0, active: 0, delayed: 1, prioritized: 0 });
    // The whole exposition passes promtool's rules and Agentry's unit conventions.
    expect(lintExposition(metrics)).toEqual([]);
    const promtool = promtoolCheckMetrics(metrics);
    if (promtool) expect(promtool.ok, promtool.output).toBe(true);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it("with budget allowances, /metrics shows what the process holds until it returns it", async () => {
    const prefix = redis.freshPrefix();
    const config = parseWorkerConfig({
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: prefix,
      ...llmEnv(),
      AGENTRY_BUDGET_ALLOWANCE_CALLS: "4",
    });
    const built = await buildWorker(config, { logger: createLogger({ name: "test", level: "silent" }) });
    closers.push(() => built.close());
    await built.start();
    const held = async (kind: string) => {
      const families = parseExposition(await built.metrics.metricsText()).families;
      const value = (name: string) =>
        families.find((f) => f.name === name)?.samples.find((s) => s.labels.kind === kind)?.value;
      return {
        open: value("agentry_budget_allowances_open"),
        tokens: value("agentry_budget_allowance_granted_tokens"),
      };
    };
    // Scraped all along: an allowance lives at least a second after its last call.
    let seen = { open: 0, tokens: 0 };
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const now = await held("global");
        if ((now.open ?? 0) > seen.open) seen = { open: now.open ?? 0, tokens: now.tokens ?? 0 };
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const client = new AgentryClient({ url: redis.url, prefix });
    closers.push(() => client.close());
    const weather = await client.submit({ prompt: "What's the weather in Lima?" }, { tenant: "acme" });
    await client.wait(weather.taskId, { timeoutMs: 20_000 });
    // Returned once idle: nothing held, nothing left reserved on the ledger.
    await expect.poll(() => held("global"), { timeout: 15_000 }).toEqual({ open: 0, tokens: 0 });
    watching = false;
    await watch;
    expect(seen.open).toBeGreaterThanOrEqual(1);
    expect(seen.tokens).toBeGreaterThan(0);
    expect((await built.ledger.getStats("global")).reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
    expect(await held("session")).toEqual({ open: 0, tokens: 0 });
  });

  it("reaps an expired lease on a shard no worker of the deployment consumes", async () => {
    // A group's task reserves its session's part on the session's shard wherever the group runs,
    // so a shard left out of every AGENTRY_WORKER_SHARDS can still hold a dead process's lease.
    const prefix = redis.freshPrefix();
    const built = await buildWorker(
      parseWorkerConfig({
        REDIS_URL: redis.url,
        AGENTRY_PREFIX: prefix,
        ...llmEnv(),
        AGENTRY_SHARDS: "3",
        AGENTRY_WORKER_SHARDS: "0",
        AGENTRY_RECONCILE_INTERVAL_MS: "100",
      }),
      { logger: createLogger({ name: "test", level: "silent" }) },
    );
    closers.push(() => built.close());
    const conn = createRedis({ url: redis.url, role: "command" });
    closers.push(() => conn.quit());
    const shard2 = new BudgetLedger({ redis: conn, prefix: shardPrefixes(prefix, 3)[2] as string });
    const scope = "tenant:acme:session:left-out" as const;
    // A reservation whose process died: nothing renews or closes it.
    const res = await shard2.reserve({
      taskId: "task_dead",
      scopes: [scope],
      amount: { tokens: 500, costMicroUsd: 0 },
      leaseMs: 50,
    });
    expect(res.ok).toBe(true);
    expect((await shard2.getStats(scope)).reserved.tokens).toBe(500);
    await built.start();
    await expect
      .poll(async () => (await shard2.getStats(scope)).reserved.tokens, { timeout: 15_000 })
      .toBe(0);
    // Settled at the reserved amount (a dead process may have been billed), and audited on the
    // shard's own chain.
    expect((await shard2.getStats(scope)).used.tokens).toBe(500);
  });

  it("records a task BullMQ failed while no Agentry worker listened: its failure audited once", async () => {
    const prefix = redis.freshPrefix();
    const client = new AgentryClient({ url: redis.url, prefix });
    closers.push(() => client.close());
    const { taskId } = await client.submit({ prompt: "What's the weather in Oslo?" }, { tenant: "acme" });
    // BullMQ fails it on its own, as after the last of its stalls, and the worker that did so
    // dies before recording it: a bare BullMQ worker with BullMQ's reason stands for both.
    const conn = createRedis({ url: redis.url, role: "worker" });
    closers.push(() => conn.quit());
    const bare = new Worker(
      "tasks",
      () => Promise.reject(new UnrecoverableError("job stalled more than allowable limit")),
      { connection: conn, prefix },
    );
    await expect.poll(async () => (await client.status(taskId)).state, { timeout: 15_000 }).toBe("failed");
    await bare.close();

    const built = await buildWorker(
      parseWorkerConfig({
        REDIS_URL: redis.url,
        AGENTRY_PREFIX: prefix,
        ...llmEnv(),
        AGENTRY_RECONCILE_INTERVAL_MS: "100",
        AGENTRY_WORKER_NAME: "sweeper",
      }),
      { logger: createLogger({ name: "test", level: "silent" }) },
    );
    closers.push(() => built.close());
    await built.start();
    const failures = async () =>
      (await built.audit.read({ count: 1_000 })).filter((e) => e.taskId === taskId && e.type === "failure");
    await expect.poll(async () => (await failures()).length, { timeout: 15_000 }).toBe(1);
    expect((await failures())[0]).toMatchObject({ tenant: "acme", actor: "sweeper" });
    // Later passes find it recorded: still one entry after a task run end to end (many passes).
    const next = await client.submit({ prompt: "What's the weather in Lima?" }, { tenant: "acme" });
    await client.wait(next.taskId, { timeoutMs: 20_000 });
    expect(await failures()).toHaveLength(1);
  });

  it("authenticates audit entries with AGENTRY_AUDIT_KEY, and warns at start without it", async () => {
    const logged: string[] = [];
    const logger = createLogger({
      name: "test",
      level: "warn",
      destination: { write: (line: string) => logged.push(line) },
    });
    const key = "worker-test-audit-key-0123456789abcdef";
    const keyed = await buildWorker(
      parseWorkerConfig({
        REDIS_URL: redis.url,
        AGENTRY_PREFIX: redis.freshPrefix(),
        ...llmEnv(),
        AGENTRY_AUDIT_KEY: key,
      }),
      { logger },
    );
    closers.push(() => keyed.close());
    expect(keyed.audit.authenticated).toBe(true);
    await keyed.audit.append({ type: "request", taskId: "t1", data: { prompt: "hi" } });
    expect((await keyed.audit.tail(1))[0]?.kid).toBe(keyed.audit.keys.current?.kid);
    expect(logged.join("")).not.toContain("audit-unauthenticated");
    expect(logged.join("")).not.toContain(key);

    const plain = await buildWorker(
      parseWorkerConfig({ REDIS_URL: redis.url, AGENTRY_PREFIX: redis.freshPrefix(), ...llmEnv() }),
      { logger },
    );
    closers.push(() => plain.close());
    expect(plain.audit.authenticated).toBe(false);
    expect(
      logged
        .map((l) => JSON.parse(l) as { event?: string; level: number })
        .filter((l) => l.event === "audit-unauthenticated"),
    ).toHaveLength(1);
  });
});
