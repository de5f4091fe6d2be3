import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { composeHooks, runAgent, ToolRegistry } from "@agentry/agent";
import { AgentryError, sleep } from "@agentry/core";
import {
  AnthropicModel,
  costMicroUsd,
  estimateInputTokens,
  maxCostMicroUsd,
  type ModelRequest,
  type ModelResponse,
} from "@agentry/llm";
import { fakeReply, startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { AllowanceLedger } from "../budget/allowance.js";
import { BudgetLedger } from "../budget/ledger.js";
import { createBudgetHooks, type BudgetHooksOptions } from "./budget-hooks.js";

const redis = useTestRedis("budget-hooks");
const run = { taskId: "t1", tenant: "acme", userId: "u1", sessionId: "s1" };
const request: ModelRequest = {
  model: "claude-sonnet-4-6",
  messages: [{ role: "user", content: "hello" }],
  maxTokens: 100,
};
const response: ModelResponse = {
  id: "m1",
  model: "claude-sonnet-4-6",
  content: [{ type: "text", text: "hi" }],
  stopReason: "end_turn",
  usage: { input: 10, output: 5, cacheCreationInput: 0, cacheReadInput: 0 },
};

/** Budget hooks on `ledger` with the real pricing and the default model. */
function hooksOn(ledger: BudgetHooksOptions["ledger"], extra: Partial<BudgetHooksOptions> = {}) {
  return createBudgetHooks({
    ledger,
    pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd },
    defaultModel: "claude-sonnet-4-6",
    ...extra,
  });
}

describe("budget hooks", () => {
  it("keep a slow call's reservation leased, so it is settled at its real usage, not reaped", async () => {
    const prefix = redis.freshPrefix();
    const ledger = new BudgetLedger({ redis: redis.client(), prefix });
    const reaper = new BudgetLedger({ redis: redis.client(), prefix });
    const hooks = hooksOn(ledger, { leaseMs: 1_500 });
    await hooks.beforeModelCall?.({ run, step: 1, request });
    await sleep(3_500); // the call takes longer than two leases
    expect(await reaper.reapExpired()).toEqual([]);
    const charge = await hooks.afterModelCall?.({ run, step: 1, request, response, durationMs: 3_500 });
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(15);
    expect(stats.reserved.tokens).toBe(0);
    // The call's cost comes back to the run as its charge: the same amount the ledger settled.
    expect(charge).toEqual({ costMicroUsd: stats.used.costMicroUsd });
    expect(stats.used.costMicroUsd).toBeGreaterThan(0);
  });

  it("settle each attempt's own call when a fenced-off attempt's call of the same step is still in flight", async () => {
    const prefix = redis.freshPrefix();
    const ledger = new BudgetLedger({ redis: redis.client(), prefix });
    const hooks = hooksOn(ledger, { leaseMs: 1_500 });
    // The first attempt lost its lock mid-call; the next one, in the same process, calls step 1 again.
    const stale = { ...run, fence: { key: `${prefix}:lock`, token: "worker-a:1" } };
    const next = { ...run, fence: { key: `${prefix}:lock`, token: "worker-a:2" } };
    await hooks.beforeModelCall?.({ run: stale, step: 1, request });
    await hooks.beforeModelCall?.({ run: next, step: 1, request });
    const usage = (output: number) => ({ ...response, usage: { ...response.usage, output } });
    await hooks.afterModelCall?.({ run: stale, step: 1, request, response: usage(5), durationMs: 10 });
    await hooks.afterModelCall?.({ run: next, step: 1, request, response: usage(7), durationMs: 10 });
    const stats = await ledger.getStats("tenant:acme");
    // Both calls were billed and both are charged, each at its own usage; nothing stays reserved,
    // and no renewal keeps a settled reservation's lease (or an orphaned one's) alive.
    expect(stats.used.tokens).toBe(15 + 17);
    expect(stats.reserved.tokens).toBe(0);
  });

  it("release a call the provider refused, and settle an unknown outcome at the reserved amount", async () => {
    const prefix = redis.freshPrefix();
    const ledger = new BudgetLedger({ redis: redis.client(), prefix });
    const hooks = hooksOn(ledger);
    await hooks.beforeModelCall?.({ run, step: 1, request });
    expect(
      await hooks.onModelCallError?.({
        run,
        step: 1,
        request,
        error: new AgentryError("PROVIDER_RATE_LIMITED", "429"),
        sent: true,
      }),
    ).toBeUndefined();
    expect((await ledger.getStats("tenant:acme")).used.tokens).toBe(0);
    await hooks.beforeModelCall?.({ run, step: 2, request });
    const reserved = (await ledger.getStats("tenant:acme")).reserved;
    const charge = await hooks.onModelCallError?.({
      run,
      step: 2,
      request,
      error: new AgentryError("PROVIDER_UNAVAILABLE", "connection reset"),
      sent: true,
    });
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(reserved.tokens);
    expect(charge).toEqual({ costMicroUsd: reserved.costMicroUsd });
    expect(stats.reserved.tokens).toBe(0);
  });

  it("a reservation Redis lost (a failover to a replica without it) stops the attempt retryable, not the task", async () => {
    const prefix = redis.freshPrefix();
    const conn = redis.client();
    const ledger = new BudgetLedger({ redis: conn, prefix });
    const hooks = hooksOn(ledger);
    await hooks.beforeModelCall?.({ run, step: 1, request });
    // Everything the reserve wrote is gone, as on a replica that never got it.
    const keys = await conn.keys(`${prefix}:*`);
    expect(keys.length).toBeGreaterThan(0);
    await conn.del(...keys);
    const err = await hooks.afterModelCall?.({ run, step: 1, request, response, durationMs: 10 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({
      code: "REDIS_UNAVAILABLE",
      retryable: true,
      message: expect.stringContaining("is gone from Redis"),
    });
    // The same for a call whose outcome is unknown (settled at the reserved amount).
    await hooks.beforeModelCall?.({ run, step: 2, request });
    await conn.del(...(await conn.keys(`${prefix}:*`)));
    await expect(
      hooks.onModelCallError?.({
        run,
        step: 2,
        request,
        error: new AgentryError("PROVIDER_UNAVAILABLE", "connection reset"),
        sent: true,
      }),
    ).rejects.toMatchObject({ code: "REDIS_UNAVAILABLE", retryable: true });
  });
});

describe("budget hooks on a call that is never sent", () => {
  let fake: FakeAnthropic;
  beforeAll(async () => {
    fake = await startFakeAnthropic();
  });
  afterAll(async () => {
    await fake.close();
  });

  // The reservation is made and then its own audit entry (or a hook after this one) fails: the
  // call never goes out. It must not stay reserved: before, it stayed leased for the longest call
  // (15 minutes), and an allowance under it was never returned.
  it.each([
    { via: "the ledger", callsPerDraw: 0 },
    { via: "an allowance", callsPerDraw: 4 },
  ])(
    "give back what they reserved, via $via, when the call is stopped before it is sent",
    async ({ callsPerDraw }) => {
      fake.reset();
      const prefix = redis.freshPrefix();
      const ledger = new BudgetLedger({ redis: redis.client(), prefix });
      const allowances =
        callsPerDraw > 0 ? new AllowanceLedger({ ledger, callsPerDraw, idleMs: 50 }) : undefined;
      const budget = createBudgetHooks({
        ledger: allowances ?? ledger,
        pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd },
        defaultModel: "claude-sonnet-4-6",
        audit: {
          append: async (entry) => {
            const event = (entry.data as { event?: string }).event;
            if (event === "reserved") throw new AgentryError("AUDIT_FAILED", "audit unavailable");
          },
        },
      });
      const llm = new AnthropicModel({ apiKey: "k", baseURL: fake.url, defaultModel: "claude-sonnet-4-6" });
      const failed = await runAgent({
        model: llm,
        tools: new ToolRegistry(),
        run,
        messages: [{ role: "user", content: "hello" }],
        hooks: composeHooks(budget),
      }).catch((e: unknown) => e);
      expect(AgentryError.isInstance(failed) && failed.code).toBe("AUDIT_FAILED");
      expect(fake.requests.filter((r) => r.path === "/v1/messages")).toHaveLength(0);
      await allowances?.close();
      const stats = await ledger.getStats("tenant:acme");
      expect(stats.reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
      expect(stats.used).toEqual({ tokens: 0, costMicroUsd: 0 });
    },
  );

  it("give back a reservation when a hook after them stops the call", async () => {
    fake.reset();
    const prefix = redis.freshPrefix();
    const ledger = new BudgetLedger({ redis: redis.client(), prefix });
    const budget = createBudgetHooks({
      ledger,
      pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd },
      defaultModel: "claude-sonnet-4-6",
    });
    const stopper = {
      beforeModelCall: async () => {
        throw new AgentryError("LOCK_LOST", "another attempt owns the task");
      },
    };
    const llm = new AnthropicModel({ apiKey: "k", baseURL: fake.url, defaultModel: "claude-sonnet-4-6" });
    const failed = await runAgent({
      model: llm,
      tools: new ToolRegistry(),
      run,
      messages: [{ role: "user", content: "hello" }],
      hooks: composeHooks(budget, stopper),
    }).catch((e: unknown) => e);
    expect(AgentryError.isInstance(failed) && failed.code).toBe("LOCK_LOST");
    expect(fake.requests).toHaveLength(0);
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
    expect(stats.used).toEqual({ tokens: 0, costMicroUsd: 0 });
  });
});

describe("budget hooks against a provider that counts more than the estimate", () => {
  let fake: FakeAnthropic;
  let llm: AnthropicModel;
  beforeAll(async () => {
    fake = await startFakeAnthropic({ tokenInflation: 4 });
    llm = new AnthropicModel({ apiKey: "k", baseURL: fake.url, defaultModel: "claude-sonnet-4-6" });
  });
  afterAll(async () => {
    await fake.close();
  });
  beforeEach(() => fake.reset());

  // Code and Japanese: the kind of prompt a real tokenizer splits finer than the estimate assumes.
  const codeRequest: ModelRequest = {
    model: "claude-sonnet-4-6",
    system: "コードを説明してください。",
    messages: [
      {
        role: "user",
        content: "const f = (xs) => xs.filter((x) => x % 2 === 0).map((x) => ({ v: x ** 2 }));",
      },
    ],
    maxTokens: 64,
  };
  const hooksFor = (ledger: BudgetLedger, extra: Partial<BudgetHooksOptions> = {}) =>
    createBudgetHooks({
      ledger,
      pricing: {
        estimateInputTokens,
        maxCostMicroUsd,
        costMicroUsd,
        countInputTokens: (r) => llm.countInputTokens(r),
      },
      defaultModel: llm.defaultModel,
      ...extra,
    });
  const countRequests = () => fake.requests.filter((r) => r.path === "/v1/messages/count_tokens").length;
  /** One model call through the hooks, as the agent loop makes it. */
  const call = async (hooks: ReturnType<typeof createBudgetHooks>, step: number) => {
    const clamp = await hooks.beforeModelCall?.({ run, step, request: codeRequest });
    const request = { ...codeRequest, ...(clamp ?? {}) };
    const response = await llm.generate(request);
    await hooks.afterModelCall?.({ run, step, request, response, durationMs: 1 });
  };
  /** The provider's count of `codeRequest`, learnt without leaving a trace in the fake's records. */
  const exactCount = async () => {
    const count = await llm.countInputTokens(codeRequest);
    fake.reset();
    return count;
  };

  it("far from every limit, reserves the estimate with its margin and makes no count call", async () => {
    const ledger = new BudgetLedger({ redis: redis.client(), prefix: redis.freshPrefix() });
    await ledger.setLimit("tenant:acme", { maxTokens: 1_000_000, period: "none" });
    await call(hooksFor(ledger), 1);
    expect(countRequests()).toBe(0);
    expect(fake.billed().calls).toBe(1);
    expect((await ledger.getStats("tenant:acme")).used.tokens).toBe(fake.billed().tokens);
  });

  it("close to a limit, counts exactly and stays within the limit where the estimate would have undershot", async () => {
    const exact = await exactCount();
    const estimate = estimateInputTokens(codeRequest);
    expect(exact).toBeGreaterThan(estimate); // the plain estimate would under-reserve here
    expect(exact).toBeLessThan(2 * estimate);
    const ledger = new BudgetLedger({ redis: redis.client(), prefix: redis.freshPrefix() });
    // Room for the exact worst case, not for the estimate with its margin.
    const limit = exact + codeRequest.maxTokens + 5;
    await ledger.setLimit("tenant:acme", { maxTokens: limit, period: "none" });
    const audit: Record<string, unknown>[] = [];
    const hooks = hooksFor(ledger, {
      audit: { append: async (e) => void audit.push(e.data as Record<string, unknown>) },
    });
    await call(hooks, 1);
    expect(countRequests()).toBe(1);
    expect(audit.find((d) => d["event"] === "reserved")).toMatchObject({
      amount: { tokens: exact + codeRequest.maxTokens },
      input: { tokens: exact, source: "count" },
    });
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(fake.billed().tokens);
    expect(stats.used.tokens).toBeLessThanOrEqual(limit);
    expect(audit.find((d) => d["event"] === "settled")).toMatchObject({ overrun: false });
    expect(audit.find((d) => d["event"] === "settled")).not.toHaveProperty("inputUndershoot");
  });

  it("alwaysCount counts every call, even far from the limits", async () => {
    const ledger = new BudgetLedger({ redis: redis.client(), prefix: redis.freshPrefix() });
    await call(hooksFor(ledger, { alwaysCount: true }), 1);
    expect(countRequests()).toBe(1);
  });

  it("when the count fails, fails closed: a retryable error, nothing reserved, no model call", async () => {
    const exact = await exactCount();
    const ledger = new BudgetLedger({ redis: redis.client(), prefix: redis.freshPrefix() });
    await ledger.setLimit("tenant:acme", { maxTokens: exact + codeRequest.maxTokens, period: "none" });
    fake.failCountTokens(fakeReply.overloaded(), fakeReply.error(404, "not_found_error", "Not found"));
    const hooks = hooksFor(ledger);
    for (const code of ["PROVIDER_OVERLOADED", "PROVIDER_UNAVAILABLE"]) {
      await expect(hooks.beforeModelCall?.({ run, step: 1, request: codeRequest })).rejects.toMatchObject({
        code,
        retryable: true,
      });
    }
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(0);
    expect(stats.reserved.tokens).toBe(0);
    expect(fake.billed().calls).toBe(0);
  });

  it("refuses an estimateMargin below 1", () => {
    const ledger = new BudgetLedger({ redis: redis.client(), prefix: redis.freshPrefix() });
    expect(() => hooksFor(ledger, { estimateMargin: 0.5 })).toThrow(/estimateMargin/);
  });
});
