import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient, BudgetLedger } from "@agentry/runtime";
import { AuditLog } from "@agentry/governance";
import { startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { deletionsKey } from "@agentry/reference";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";
import { referenceReply } from "@agentry/reference/testing";

const redis = useTestRedis("multi");
const dir = mkdtempSync(join(tmpdir(), "agentry-mp-"));
// Deletes in the "test" environment are allowed, so a side-effecting tool runs without approval.
const policyFile = join(dir, "policy.yaml");
writeFileSync(
  policyFile,
  "version: 1\npolicies:\n  - name: no-prod-delete\n    when:\n      tool: delete_resource\n      input:\n        env: production\n    then: deny\n    reason: Production deletes are forbidden\n",
);

let fake: FakeAnthropic;
const workers: WorkerProcess[] = [];
const clients: AgentryClient[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.kill()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await fake?.close();
});
afterAll(() => undefined);

async function cluster(n: number, options: { delayMs?: number } = {}) {
  fake = await startFakeAnthropic({
    handler: (req) => ({ ...referenceReply(req), ...(options.delayMs ? { delayMs: options.delayMs } : {}) }),
  });
  const prefix = redis.freshPrefix();
  const env = {
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_POLICY_FILE: policyFile,
    AGENTRY_CONCURRENCY: "8",
    AGENTRY_LOCK_DURATION_MS: "2000",
    AGENTRY_STALLED_INTERVAL_MS: "1000",
    AGENTRY_BUDGET_LEASE_MS: "8000",
  };
  for (let i = 0; i < n; i++) workers.push(startWorkerProcess(`w${i + 1}`, env));
  await Promise.all(workers.map((w) => waitStarted(w)));
  const conn = redis.client();
  const client = new AgentryClient({
    url: redis.url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis: conn, prefix }),
  });
  clients.push(client);
  return { prefix, client, conn, env };
}

describe("several worker processes", () => {
  it("process many tasks with the real SDK against the fake API, each exactly once", async () => {
    const { client, conn, prefix } = await cluster(3);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const prompt = i % 3 === 0 ? `delete res-${i} in development` : `What's the weather in City${i}?`;
      ids.push((await client.submit({ prompt, userId: `u${i % 4}` }, { tenant: "acme" })).taskId);
    }
    const results = await Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 90_000 })));
    expect(results.every((r) => r.steps === 2)).toBe(true);
    const deletions = (await conn.lrange(deletionsKey(prefix), 0, -1)).map(
      (x) => JSON.parse(x) as { taskId: string },
    );
    expect(deletions).toHaveLength(10);
    expect(new Set(deletions.map((d) => d.taskId)).size).toBe(10);
    expect(fake.requests).toHaveLength(60);
    // Work was spread over the processes.
    // (A process's log lines may reach this process after the completions it reported through Redis.)
    await expect
      .poll(() => workers.filter((w) => w.output().includes('"event":"task-completed"')).length, {
        timeout: 30_000,
      })
      .toBeGreaterThanOrEqual(2);
    const ledger = new BudgetLedger({ redis: conn, prefix });
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.costMicroUsd).toBe(results.reduce((s, r) => s + r.costMicroUsd, 0));
    expect(stats.reserved.tokens).toBe(0);
    expect((await new AuditLog({ redis: conn, prefix }).verify()).ok).toBe(true);
  }, 120_000);

  it("finishes a task exactly once after its worker is SIGKILLed mid model call", async () => {
    const { client, conn, prefix } = await cluster(2, { delayMs: 1_500 });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++)
      ids.push(
        (await client.submit({ prompt: `delete victim-${i} in development` }, { tenant: "acme" })).taskId,
      );
    // Wait until both workers are mid-call, then kill one.
    await expect.poll(() => fake.requests.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
    const victim = workers[0] as WorkerProcess;
    const survivor = workers[1] as WorkerProcess;
    // Precondition: the victim holds tasks it has started and not finished when it dies.
    const startedBy = (w: WorkerProcess, event: string) =>
      new Set(
        w
          .output()
          .split("\n")
          .filter((l) => l.includes(`"event":"${event}"`))
          .map((l) => (JSON.parse(l) as { taskId: string }).taskId),
      );
    await expect.poll(() => startedBy(victim, "task-started").size, { timeout: 20_000 }).toBeGreaterThan(0);
    await victim.kill();
    const results = await Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 90_000 })));
    expect(results).toHaveLength(6);
    // Read once all of the victim's output has arrived: the tasks it started and never finished.
    const held = [...startedBy(victim, "task-started")].filter(
      (id) => !startedBy(victim, "task-completed").has(id),
    );
    expect(held.length).toBeGreaterThan(0);
    // The victim's tasks were finished by the survivor (whose log lines may reach this process
    // after the completions it reported through Redis), and each task answered exactly once.
    await expect
      .poll(() => held.filter((id) => !startedBy(survivor, "task-completed").has(id)), { timeout: 30_000 })
      .toEqual([]);
    const responses = (await new AuditLog({ redis: conn, prefix }).read({ count: 100_000 })).filter(
      (e) => e.type === "response",
    );
    for (const id of ids) expect(responses.filter((e) => e.taskId === id)).toHaveLength(1);
    const deletions = (await conn.lrange(deletionsKey(prefix), 0, -1)).map(
      (x) => JSON.parse(x) as { taskId: string },
    );
    // No tool ran twice: one deletion per task.
    expect(deletions.map((d) => d.taskId).sort()).toEqual([...ids].sort());
    // The dead attempt's reservation was settled (at its reserved amount) or released: nothing stays reserved.
    const ledger = new BudgetLedger({ redis: conn, prefix });
    await expect
      .poll(async () => (await ledger.getStats("global")).reserved.tokens, { timeout: 30_000 })
      .toBe(0);
  }, 150_000);

  it("rides out a 429 storm without failed or lost tasks", async () => {
    const { client } = await cluster(2);
    for (let i = 0; i < 12; i++)
      fake.fail({
        kind: "error",
        status: 429,
        type: "rate_limit_error",
        message: "Number of requests exceeded",
        headers: { "retry-after": "1" },
      });
    const ids: string[] = [];
    for (let i = 0; i < 10; i++)
      ids.push(
        (await client.submit({ prompt: `What's the weather in Storm${i}?` }, { tenant: "acme" })).taskId,
      );
    const results = await Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 90_000 })));
    expect(results).toHaveLength(10);
    for (const id of ids) expect((await client.status(id)).state).toBe("completed");
    expect(fake.requests.filter((r) => r.path.includes("messages")).length).toBeGreaterThanOrEqual(20 + 12);
  }, 120_000);
});
