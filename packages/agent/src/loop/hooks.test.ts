import { AgentryError } from "@agentry/core";
import type { ModelRequest, ToolUseBlock } from "@agentry/llm";
import { describe, expect, it } from "vitest";
import {
  composeHooks,
  type AgentHooks,
  type ModelCallInfo,
  type ToolCallDecision,
  type ToolCallInfo,
} from "./hooks.js";

const run = { taskId: "t", tenant: "acme", userId: "u", sessionId: "s" };
const call: ToolUseBlock = { type: "tool_use", id: "c1", name: "x", input: {} };
const toolInfo: ToolCallInfo = { run, step: 1, call };
const request: ModelRequest = { messages: [{ role: "user", content: "hi" }], maxTokens: 1000 };
const modelInfo: ModelCallInfo = { run, step: 1, request };

const decide = (decision: ToolCallDecision, seen?: string[], name?: string): AgentHooks => ({
  beforeToolCall: async () => {
    if (seen !== undefined && name !== undefined) seen.push(name);
    return decision;
  },
});

describe("composeHooks", () => {
  it("evaluates every beforeToolCall and lets deny beat suspend beat allow", async () => {
    const seen: string[] = [];
    const hooks = composeHooks(
      decide({ type: "allow" }, seen, "a"),
      decide({ type: "suspend", reason: "needs approval", data: { approvalId: "ap1" } }, seen, "b"),
      decide({ type: "deny", reason: "prod", policy: "no-prod-delete" }, seen, "c"),
      decide({ type: "suspend", reason: "second" }, seen, "d"),
    );
    expect(await hooks.beforeToolCall?.(toolInfo)).toEqual({
      type: "deny",
      reason: "prod",
      policy: "no-prod-delete",
    });
    expect(seen).toEqual(["a", "b", "c", "d"]);

    const suspendOnly = composeHooks(
      decide({ type: "allow" }),
      decide({ type: "suspend", reason: "first" }),
      decide({ type: "suspend", reason: "second" }),
    );
    expect(await suspendOnly.beforeToolCall?.(toolInfo)).toEqual({ type: "suspend", reason: "first" });

    const allowAll = composeHooks(decide({ type: "allow" }), {});
    expect(await allowAll.beforeToolCall?.(toolInfo)).toEqual({ type: "allow" });
  });

  it("keeps the smallest maxTokens from beforeModelCall and stops at the first throw", async () => {
    const hooks = composeHooks(
      { beforeModelCall: async () => ({ maxTokens: 500 }) },
      { beforeModelCall: async () => undefined },
      { beforeModelCall: async () => ({ maxTokens: 300 }) },
      { beforeModelCall: async () => ({ maxTokens: 800 }) },
    );
    expect(await hooks.beforeModelCall?.(modelInfo)).toEqual({ maxTokens: 300 });
    expect(
      await composeHooks({ beforeModelCall: async () => undefined }).beforeModelCall?.(modelInfo),
    ).toBeUndefined();

    let laterRan = false;
    const budget = composeHooks(
      {
        beforeModelCall: async () => {
          throw new AgentryError("BUDGET_EXCEEDED", "tenant budget spent");
        },
      },
      {
        beforeModelCall: async () => {
          laterRan = true;
        },
      },
    );
    await expect(budget.beforeModelCall?.(modelInfo)).rejects.toMatchObject({ code: "BUDGET_EXCEEDED" });
    expect(laterRan).toBe(false);
  });

  it("runs the other hooks in the order given, each awaited, and binds methods to their object", async () => {
    const order: string[] = [];
    class Audit implements AgentHooks {
      readonly name = "audit";
      async onCheckpoint(): Promise<void> {
        await new Promise((r) => setTimeout(r, 5));
        order.push(this.name);
      }
    }
    const hooks = composeHooks(new Audit(), { onCheckpoint: async () => void order.push("store") });
    await hooks.onCheckpoint?.({
      version: 1,
      messages: [],
      step: 0,
      usage: { input: 0, output: 0, cacheCreationInput: 0, cacheReadInput: 0 },
      pending: [],
    });
    expect(order).toEqual(["audit", "store"]);
  });

  it("adds up the charges of model-call hooks, and charges nothing when no hook did", async () => {
    const info = {
      run: { taskId: "t", tenant: "acme", userId: "u", sessionId: "s" },
      step: 1,
      request: { messages: [], maxTokens: 10 },
    };
    const response = {
      id: "m",
      model: "scripted-1",
      stopReason: "end_turn" as const,
      content: [],
      usage: { input: 1, output: 1, cacheCreationInput: 0, cacheReadInput: 0 },
    };
    const hooks = composeHooks(
      { afterModelCall: async () => ({ costMicroUsd: 30 }) },
      { afterModelCall: async () => undefined },
      {
        afterModelCall: async () => ({ costMicroUsd: 12 }),
        onModelCallError: async () => ({ costMicroUsd: 7 }),
      },
    );
    expect(await hooks.afterModelCall?.({ ...info, response, durationMs: 1 })).toEqual({ costMicroUsd: 42 });
    expect(await hooks.onModelCallError?.({ ...info, error: new Error("x"), sent: true })).toEqual({
      costMicroUsd: 7,
    });
    expect(
      await composeHooks({ afterModelCall: async () => undefined }).afterModelCall?.({
        ...info,
        response,
        durationMs: 1,
      }),
    ).toBeUndefined();
  });

  it("leaves hooks nobody set undefined", () => {
    expect(composeHooks({ afterModelCall: async () => undefined })).toEqual({
      afterModelCall: expect.any(Function),
    });
  });
});
