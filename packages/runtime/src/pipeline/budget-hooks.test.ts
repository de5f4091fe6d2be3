import { describe, expect, it } from "vitest";
import { sleep } from "@agentry/core";
import { costMicroUsd, estimateInputTokens, maxCostMicroUsd, type ModelRequest, type ModelResponse } from "@agentry/llm";
import { useTestRedis } from "@agentry/testkit";
import { BudgetLedger } from "../budget/ledger.js";
import { createBudgetHooks } from "./budget-hooks.js";

const redis = useTestRedis("budget-hooks");
const run = { taskId: "t1", tenant: "acme", userId: "u1", sessionId: "s1" };
const request: ModelRequest = { model: "claude-sonnet-4-6", messages: [{ role: "user", content: "hello" }], maxTokens: 100 };
const response: ModelResponse = {
  id: "m1",
  model: "claude-sonnet-4-6",
  content: [{ type: "text", text: "hi" }],
  stopReason: "end_turn",
  usage: { input: 10, output: 5, cacheCreationInput: 0, cacheReadInput: 0 },
};

describe("budget hooks", () => {
  it("keep a slow call's reservation leased, so it is settled at its real usage, not reaped", async () => {
    const prefix = redis.freshPrefix();
    const ledger = new BudgetLedger({ redis: redis.client(), prefix });
    const reaper = new BudgetLedger({ redis: redis.client(), prefix });
    const hooks = createBudgetHooks({ ledger, pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd }, defaultModel: "claude-sonnet-4-6", leaseMs: 1_500 });
    await hooks.beforeModelCall?.({ run, step: 1, request });
    await sleep(3_500); // the call takes longer than two leases
    expect(await reaper.reapExpired()).toEqual([]);
    await hooks.afterModelCall?.({ run, step: 1, request, response, durationMs: 3_500 });
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(15);
    expect(stats.reserved.tokens).toBe(0);
  });

  it("release a call the provider refused, and settle an unknown outcome at the reserved amount", async () => {
    const prefix = redis.freshPrefix();
    const ledger = new BudgetLedger({ redis: redis.client(), prefix });
    const hooks = createBudgetHooks({ ledger, pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd }, defaultModel: "claude-sonnet-4-6" });
    const { AgentryError } = await import("@agentry/core");
    await hooks.beforeModelCall?.({ run, step: 1, request });
    await hooks.onModelCallError?.({ run, step: 1, request, error: new AgentryError("PROVIDER_RATE_LIMITED", "429") });
    expect((await ledger.getStats("tenant:acme")).used.tokens).toBe(0);
    await hooks.beforeModelCall?.({ run, step: 2, request });
    const reserved = (await ledger.getStats("tenant:acme")).reserved.tokens;
    await hooks.onModelCallError?.({ run, step: 2, request, error: new AgentryError("PROVIDER_UNAVAILABLE", "connection reset") });
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(reserved);
    expect(stats.reserved.tokens).toBe(0);
  });
});
