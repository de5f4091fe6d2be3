import { describe, expect, it } from "vitest";
import {
  costMicroUsd,
  estimateInputTokens,
  maxCostMicroUsd,
  type ModelRequest,
  type ModelResponse,
} from "@agentry/llm";
import { useTestRedis } from "@agentry/testkit";
import { BudgetLedger } from "../budget/ledger.js";
import { createBudgetHooks, defaultScopes } from "./budget-hooks.js";

const redis = useTestRedis("budget-scopes");
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

describe("budget scopes of a run", () => {
  it("are the run's tenant, and its user and session within that tenant", () => {
    expect(defaultScopes({ taskId: "t", tenant: "acme", userId: "bob", sessionId: "s:1" })).toEqual([
      "global",
      "tenant:acme",
      "tenant:acme:user:bob",
      "tenant:acme:session:s:1",
    ]);
  });

  it("a user id capped in one tenant leaves the same user id of another tenant untouched", async () => {
    const ledger = new BudgetLedger({ redis: redis.client(), prefix: redis.freshPrefix() });
    const hooks = createBudgetHooks({
      ledger,
      pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd },
      defaultModel: "claude-sonnet-4-6",
      minOutputTokens: 100,
    });
    await ledger.setLimit("tenant:a:user:bob", { maxTokens: 1, period: "none" });
    const ofA = { taskId: "ta", tenant: "a", userId: "bob", sessionId: "s1" };
    const ofB = { taskId: "tb", tenant: "b", userId: "bob", sessionId: "s1" };

    await expect(hooks.beforeModelCall?.({ run: ofA, step: 1, request })).rejects.toMatchObject({
      code: "BUDGET_EXCEEDED",
    });

    for (let step = 1; step <= 3; step++) {
      await hooks.beforeModelCall?.({ run: ofB, step, request });
      await hooks.afterModelCall?.({ run: ofB, step, request, response, durationMs: 1 });
    }
    expect((await ledger.getStats("tenant:a:user:bob")).used.tokens).toBe(0);
    expect((await ledger.getStats("tenant:b:user:bob")).used.tokens).toBe(45);
    expect((await ledger.getStats("tenant:a:session:s1")).used.tokens).toBe(0);
  });
});
