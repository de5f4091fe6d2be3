import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { AgentryError, createLogger, tenantOwnedId } from "@agentry/core";
import { ToolRegistry, defineTool, type AgentHooks } from "@agentry/agent";
import { createLanguageModel, estimateInputTokens, costMicroUsd, maxCostMicroUsd } from "@agentry/llm";
import { RedisSessionStore, RedisSessionTurns } from "@agentry/memory";
import { startFakeAnthropic, useTestRedis, type FakeAnthropic, type RecordedRequest } from "@agentry/testkit";
import { AgentryClient } from "../client/agentry-client.js";
import { AgentWorker } from "../worker/agent-worker.js";
import { BudgetLedger } from "../budget/ledger.js";
import { createAgentTaskHandler } from "./agent-task-handler.js";
import { createBudgetHooks } from "./budget-hooks.js";
import type { AuditEntryInput } from "@agentry/core";
import { referenceReply } from "@agentry/reference/testing";

const logger = createLogger({ name: "test", level: "silent" });
const redis = useTestRedis("pipeline");
// The real Anthropic adapter and SDK against the fake Messages API, which answers by the reference tools' rule table (`referenceReply`).
let fake: FakeAnthropic;
beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: referenceReply });
});
afterAll(() => fake.close());
/** The Messages requests (not token counts) whose conversation mentions `text`. */
const messagesWith = (text: string): RecordedRequest[] =>
  fake.requests.filter((r) => r.path === "/v1/messages" && JSON.stringify(r.body.messages).includes(text));
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

/** A weather tool call for this city hangs while `hang.on` (a tool that never answers). */
const hang = { on: false, city: "Slowtown" };

function setup(
  opts: { hooks?: AgentHooks[]; concurrency?: number; prefix?: string; shutdownGraceMs?: number } = {},
) {
  const prefix = opts.prefix ?? redis.freshPrefix();
  const conn = redis.client();
  const model = createLanguageModel({ llm: "anthropic", apiKey: "test-key", baseURL: fake.url });
  const ran: { tool: string; input: unknown }[] = [];
  const tools = new ToolRegistry().register(
    defineTool({
      name: "get_weather",
      description: "Current weather for a city",
      input: z.object({ city: z.string() }),
      handler: async ({ city }) => {
        ran.push({ tool: "get_weather", input: { city } });
        if (hang.on && city === hang.city) await new Promise(() => undefined);
        return { city, tempC: 18, sky: "clear" };
      },
    }),
    defineTool({
      name: "delete_resource",
      description: "Delete a resource (simulated)",
      input: z.object({ resource: z.string(), env: z.string() }),
      handler: (input) => {
        ran.push({ tool: "delete_resource", input });
        return { deleted: input.resource };
      },
    }),
  );
  const ledger = new BudgetLedger({ redis: conn, prefix });
  const audit: AuditEntryInput[] = [];
  const budget = createBudgetHooks({
    ledger,
    pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd },
    defaultModel: model.defaultModel,
    audit: { append: async (e) => void audit.push(e) },
  });
  const sessions = new RedisSessionStore({ redis: conn, prefix });
  const turns = new RedisSessionTurns({ redis: conn, prefix });
  const client = new AgentryClient({ url: redis.url, prefix, sessionOrder: turns });
  const handler = createAgentTaskHandler({
    model,
    tools,
    redis: conn,
    prefix,
    sessions,
    turns,
    hooks: [budget, ...(opts.hooks ?? [])],
    audit: { append: async (e) => void audit.push(e) },
    actor: "worker-test-1",
  });
  const worker = new AgentWorker({
    url: redis.url,
    prefix,
    logger,
    handler,
    concurrency: opts.concurrency ?? 4,
    ...(opts.shutdownGraceMs ? { shutdownGraceMs: opts.shutdownGraceMs } : {}),
  });
  closers.push(
    () => client.close(),
    () => worker.close(),
  );
  return { client, worker, ran, ledger, sessions, audit, prefix, conn };
}

describe("agent task handler", () => {
  it("answers a weather question through the tool, charges the budget and appends the session", async () => {
    const { client, worker, ran, ledger, sessions, audit } = setup();
    const billedBefore = fake.billed();
    await worker.start();
    const { taskId, sessionId } = await client.submit(
      { prompt: "What's the weather in Paris?", userId: "u1" },
      { tenant: "acme" },
    );
    const result = await client.wait(taskId, { timeoutMs: 15_000 });
    expect(ran).toEqual([{ tool: "get_weather", input: { city: "Paris" } }]);
    expect(result.steps).toBe(2);
    expect(result.text).toBe('get_weather returned: {"city":"Paris","tempC":18,"sky":"clear"}');
    // The ledger holds what the provider billed for the task's two calls, and the result its cost.
    expect(fake.billed().calls - billedBefore.calls).toBe(2);
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(fake.billed().tokens - billedBefore.tokens);
    expect(
      result.usage.input +
        result.usage.output +
        result.usage.cacheCreationInput +
        result.usage.cacheReadInput,
    ).toBe(stats.used.tokens);
    expect(result.costMicroUsd).toBeGreaterThan(0);
    expect(stats.used.costMicroUsd).toBe(result.costMicroUsd);
    expect(stats.reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
    const history = await sessions.load(tenantOwnedId("acme", "session", sessionId));
    expect(history[0]).toEqual({ role: "user", content: "What's the weather in Paris?" });
    expect(history).toHaveLength(4); // user, assistant tool_use, user tool_result, assistant text
    expect(audit.map((e) => e.type)).toEqual([
      "request",
      "budget",
      "budget",
      "decision",
      "budget",
      "budget",
      "decision",
      "response",
    ]);
    // Decisions say what the model chose and why (its text), and which worker recorded them.
    const decisions = audit.filter((e) => e.type === "decision");
    expect(decisions.every((e) => e.actor === "worker-test-1")).toBe(true);
    expect(decisions[0]?.data).toMatchObject({
      step: 1,
      toolUses: [{ name: "get_weather", input: { city: "Paris" } }],
      stopReason: "tool_use",
    });
    expect(decisions[1]?.data).toMatchObject({ step: 2, toolUses: [], stopReason: "end_turn" });
    expect(String(decisions[1]?.data.text)).toBe(result.text);
  });

  it("a task handed back at shutdown keeps its session turn and audits no failure; it finishes first on another worker", async () => {
    hang.on = true;
    const first = setup({ shutdownGraceMs: 100 });
    await first.worker.start();
    const sessionId = "s-shutdown";
    const a = (
      await first.client.submit({ prompt: "What's the weather in Slowtown?", sessionId }, { tenant: "acme" })
    ).taskId;
    const b = (
      await first.client.submit({ prompt: "What's the weather in Rome?", sessionId }, { tenant: "acme" })
    ).taskId;
    await expect.poll(() => first.ran.length, { timeout: 10_000 }).toBe(1);
    await first.worker.close(); // grace runs out: the hanging task is handed back
    hang.on = false;
    expect(first.audit.filter((e) => e.type === "failure")).toEqual([]);
    expect(
      await new RedisSessionTurns({ redis: first.conn, prefix: first.prefix }).head(
        tenantOwnedId("acme", "session", sessionId),
      ),
    ).toBe(a);

    const second = setup({ prefix: first.prefix });
    await second.worker.start();
    const [ra, rb] = await Promise.all([
      second.client.wait(a, { timeoutMs: 20_000 }),
      second.client.wait(b, { timeoutMs: 20_000 }),
    ]);
    // The handed-back call's outcome is unknown and the tool is not idempotent: not re-run.
    expect(ra.text).toContain("interrupted");
    expect(rb.text).toContain("Rome");
    // Submit order held: a's turn came first, so b's history starts with a's conversation.
    const history = await second.sessions.load(tenantOwnedId("acme", "session", sessionId));
    expect(history.map((m) => (typeof m.content === "string" ? m.content : null)).filter(Boolean)).toEqual([
      "What's the weather in Slowtown?",
      "What's the weather in Rome?",
    ]);
  });

  it("fails with BUDGET_EXCEEDED before any provider call", async () => {
    const { client, worker, ledger } = setup();
    await ledger.setLimit("tenant:poor", { maxTokens: 50, period: "none" });
    await worker.start();
    const { taskId } = await client.submit({ prompt: "What's the weather in Oslo?" }, { tenant: "poor" });
    await expect(client.wait(taskId, { timeoutMs: 15_000 })).rejects.toMatchObject({
      code: "BUDGET_EXCEEDED",
    });
    expect(messagesWith("What's the weather in Oslo?")).toEqual([]);
    expect(await ledger.getStats("tenant:poor")).toMatchObject({
      used: { tokens: 0, costMicroUsd: 0 },
      reserved: { tokens: 0, costMicroUsd: 0 },
    });
  });

  it("Redis unavailable on the last attempt ends nothing: the task waits for Redis and completes, no failure audited", async () => {
    // Four attempts fail on the provider (each uses one), the fifth and last meets Redis being
    // unavailable (which uses none): the task must not end there.
    const failures: AgentryError[] = [
      ...Array.from({ length: 4 }, () => new AgentryError("PROVIDER_OVERLOADED", "overloaded")),
      new AgentryError("REDIS_UNAVAILABLE", "Redis is failing over", { retryable: true }),
    ];
    const { client, worker, audit } = setup({
      hooks: [
        {
          beforeModelCall: () => {
            const next = failures.shift();
            return next ? Promise.reject(next) : Promise.resolve();
          },
        },
      ],
    });
    await worker.start();
    const { taskId } = await client.submit({ prompt: "What's the weather in Lima?" }, { tenant: "acme" });
    const result = await client.wait(taskId, { timeoutMs: 60_000 });
    expect(result.text).toContain("Lima");
    expect(failures).toEqual([]);
    expect(audit.filter((e) => e.type === "failure")).toEqual([]);
    const job = await worker.queue.getJob(taskId);
    // The four provider failures and the completing attempt; the wait for Redis was a start only.
    expect(job?.attemptsMade).toBe(5);
    expect(job?.attemptsStarted).toBe(6);
    expect(job?.data.redisWaits).toBe(1);
  }, 90_000);

  it("clamps max_tokens when the remainder is above the floor", async () => {
    const billedBefore = fake.billed().tokens;
    const { client, worker, ledger } = setup();
    await ledger.setLimit("tenant:tight", { maxTokens: 1_500, period: "none" });
    await worker.start();
    const { taskId } = await client.submit(
      { prompt: "Say hello to the tight tenant", maxTokens: 4000 },
      { tenant: "tight" },
    );
    await client.wait(taskId, { timeoutMs: 15_000 });
    const sent = messagesWith("Say hello to the tight tenant");
    expect(sent).toHaveLength(1);
    // Clamped to what the limit leaves beside the exactly counted prompt, never below the floor.
    const maxTokens = Number(sent[0]?.body.max_tokens);
    expect(maxTokens).toBeLessThan(4000);
    expect(maxTokens).toBeGreaterThanOrEqual(256);
    const stats = await ledger.getStats("tenant:tight");
    expect(stats.used.tokens).toBeLessThanOrEqual(1_500);
    expect(stats.used.tokens).toBe(fake.billed().tokens - billedBefore);
  });

  it("parks a suspended tool call, resumes it on any worker, runs the tool once", async () => {
    const approvals = new Map<string, boolean>();
    const expiresAt = Date.now() + 600_000;
    const gate: AgentHooks = {
      async beforeToolCall({ call, previousSuspension }) {
        if (call.name !== "delete_resource") return { type: "allow" };
        if (!previousSuspension)
          return {
            type: "suspend",
            reason: "needs approval",
            data: { approvalId: `appr-${call.id}`, expiresAt },
          };
        return approvals.get(String(previousSuspension.data?.approvalId))
          ? { type: "allow" }
          : { type: "suspend", reason: "still pending", data: previousSuspension.data };
      },
    };
    const { client, worker, ran, ledger } = setup({ hooks: [gate], concurrency: 1 });
    await worker.start();
    const { taskId } = await client.submit({ prompt: "delete db-7 in staging" }, { tenant: "acme" });
    await expect
      .poll(async () => (await client.status(taskId)).state, { timeout: 10_000 })
      .toBe("awaiting_approval");
    const [approvalId] = (await client.status(taskId)).approvalIds ?? [];
    expect(approvalId).toMatch(/^appr-/);
    // Parked until the approval's own expiry (then resumed to apply the expired outcome).
    expect((await client.queue.getJob(taskId))?.data.parked).toMatchObject({
      reason: "approval",
      until: expiresAt + 1_000,
      tools: ["delete_resource"],
    });
    expect(ran).toEqual([]);
    approvals.set(approvalId as string, true);
    await worker.promote(taskId);
    const result = await client.wait(taskId, { timeoutMs: 15_000 });
    expect(ran).toEqual([{ tool: "delete_resource", input: { resource: "db-7", env: "staging" } }]);
    expect(result.text).toBe('delete_resource returned: {"deleted":"db-7"}');
    // The cost of the attempt before the pause is part of the result.
    expect(result.costMicroUsd).toBe((await ledger.getStats("tenant:acme")).used.costMicroUsd);
  });

  it("runs a session's tasks one at a time in submit order", async () => {
    const { client, worker, sessions } = setup({ concurrency: 4 });
    await worker.start();
    const prompts = ["first question", "second question", "third question"];
    const ids: string[] = [];
    for (const prompt of prompts)
      ids.push((await client.submit({ prompt, sessionId: "s-ordered" }, { tenant: "acme" })).taskId);
    const results = await Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 60_000 })));
    expect(results.map((r) => r.finishedAt)).toEqual(
      [...results.map((r) => r.finishedAt)].sort((a, b) => a - b),
    );
    const history = await sessions.load(tenantOwnedId("acme", "session", "s-ordered"));
    expect(
      history.filter((m) => m.role === "user" && typeof m.content === "string").map((m) => m.content),
    ).toEqual(prompts);
  });

  it("keeps two tenants' sessions with the same id apart: no shared history, no shared turn", async () => {
    const gate: AgentHooks = {
      async beforeToolCall({ call }) {
        return call.name === "delete_resource"
          ? {
              type: "suspend",
              reason: "needs approval",
              data: { approvalId: `appr-${call.id}`, expiresAt: Date.now() + 600_000 },
            }
          : { type: "allow" };
      },
    };
    const { client, worker, sessions } = setup({ hooks: [gate] });
    await worker.start();
    const a = await client.submit({ prompt: "My secret is hunter2", sessionId: "shared" }, { tenant: "a" });
    await client.wait(a.taskId, { timeoutMs: 15_000 });
    // Tenant a now holds the session's turn while it waits for an approval.
    const held = await client.submit(
      { prompt: "delete db-7 in staging", sessionId: "shared" },
      { tenant: "a" },
    );
    await expect
      .poll(async () => (await client.status(held.taskId)).state, { timeout: 10_000 })
      .toBe("awaiting_approval");

    const b = await client.submit(
      { prompt: "Say hello from tenant b", sessionId: "shared" },
      { tenant: "b" },
    );
    await client.wait(b.taskId, { timeoutMs: 15_000 });
    const seenByB = messagesWith("Say hello from tenant b");
    expect(seenByB).toHaveLength(1);
    expect(JSON.stringify(seenByB)).not.toContain("hunter2");
    // The model was called with tenant b's prompt as the whole conversation.
    expect(seenByB[0]?.body.messages).toEqual([{ role: "user", content: "Say hello from tenant b" }]);
    expect((await sessions.load(tenantOwnedId("b", "session", "shared"))).map((m) => m.content)[0]).toBe(
      "Say hello from tenant b",
    );
    expect((await sessions.load(tenantOwnedId("a", "session", "shared"))).map((m) => m.content)[0]).toBe(
      "My secret is hunter2",
    );
    expect((await client.status(held.taskId)).state).toBe("awaiting_approval");
  });
});
