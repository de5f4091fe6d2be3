import type { Fence } from "@agentry/core";
import type { ModelRequest, ModelResponse, ToolResultBlock, ToolUseBlock } from "@agentry/llm";
import type { AgentState } from "./state.js";

/** What a `beforeToolCall` hook decides about one tool call. */
export type ToolCallDecision =
  | { type: "allow" }
  | { type: "deny"; reason: string; policy?: string }
  /** Do not run now; the run returns `suspended` and can be resumed later. `data` survives (e.g. `{ approvalId }`). */
  | { type: "suspend"; reason: string; data?: Record<string, unknown> };

/** Who and what a run is for. */
export interface RunContext {
  taskId: string;
  tenant: string;
  userId: string;
  sessionId: string;
  attributes?: Record<string, string>;
  /**
   * The attempt's write condition (its job lock). Hooks and stores that write on behalf of the
   * run pass it on, so an attempt that lost its lock to another worker commits nothing more.
   * Absent when the run is not fenced (a single process, tests).
   */
  fence?: Fence;
}

/** One model call. `step` is 1-based: the n-th model call of the task (it carries over a resume). */
export interface ModelCallInfo {
  run: RunContext;
  step: number;
  /** The request as it will be (or was) sent, after `beforeModelCall` clamps. */
  request: ModelRequest;
}

/** One tool call. `step` is the model call that asked for it. */
export interface ToolCallInfo {
  run: RunContext;
  step: number;
  call: ToolUseBlock;
  /** Set when this call was suspended before (resume). */
  previousSuspension?: { reason: string; data?: Record<string, unknown> };
  /** The registry declares the called tool destructive (`Tool.destructive`); policies read it. */
  destructive?: boolean;
}

/**
 * What a model-call hook charged for the call (a budget hook settling it). The run sums it into
 * its state, so the cost reaches the run's result and every checkpoint; no hook keeps it aside.
 */
export interface ModelCallCharge {
  /** Micro-USD charged for this call. */
  costMicroUsd: number;
}

/**
 * Seams around the loop: budgets, policies, approvals, audit and tracing plug in here.
 * Every hook is awaited; a hook that throws fails the run (nothing is skipped silently).
 */
export interface AgentHooks {
  /** May throw (e.g. BUDGET_EXCEEDED) to stop the run before the call; may return a smaller maxTokens (budget clamp). */
  beforeModelCall?(info: ModelCallInfo): Promise<{ maxTokens?: number } | void>;
  /** May return what it charged for the call; the run adds it to its `costMicroUsd`. */
  afterModelCall?(
    info: ModelCallInfo & { response: ModelResponse; durationMs: number },
  ): Promise<ModelCallCharge | void>;
  /**
   * Called when the model call throws, or when it is never sent: `sent` is false when a
   * `beforeModelCall` hook threw (in a composition, the hooks after it did not run theirs), so
   * nothing was billed and what a hook reserved or opened for the call can be let go. The error
   * is rethrown after it. May return what it charged (e.g. settled at the reserved amount).
   */
  onModelCallError?(info: ModelCallInfo & { error: unknown; sent: boolean }): Promise<ModelCallCharge | void>;
  /**
   * @defaultValue allow. A throw fails the run without running the tool (retry re-evaluates it).
   * Not called for a call the registry refuses (unknown tool, input failing the schema): the model
   * gets the error result, and `afterToolCall` sees it with an `allow` decision, as a call that
   * failed without running.
   */
  beforeToolCall?(info: ToolCallInfo): Promise<ToolCallDecision>;
  /** Called for every call that got a result (allowed, denied, reused from the journal); not for suspensions. */
  afterToolCall?(
    info: ToolCallInfo & { result: ToolResultBlock; durationMs: number; decision: ToolCallDecision },
  ): Promise<void>;
  /** Called after every state change worth keeping (model response, each tool result); the runtime persists it. Awaited: a failure fails the run. */
  onCheckpoint?(state: AgentState): Promise<void>;
}

const DECISION_RANK = { allow: 0, suspend: 1, deny: 2 } as const;

/**
 * Combines hooks. Each hook runs in the order given, one after another.
 * - `beforeModelCall`: every hook runs; the smallest `maxTokens` wins; a throw stops at once.
 * - `beforeToolCall`: every hook runs; deny beats suspend beats allow, and among equals the first wins.
 * - `afterModelCall`, `onModelCallError`: every hook runs in order; their charges add up.
 * - the others: every hook runs in order; a throw stops at once.
 */
export function composeHooks(...hooks: AgentHooks[]): AgentHooks {
  const all = <K extends keyof AgentHooks>(key: K): NonNullable<AgentHooks[K]>[] =>
    hooks.map((h) => h[key]?.bind(h)).filter((f): f is NonNullable<AgentHooks[K]> => f !== undefined);

  const before = all("beforeModelCall");
  const after = all("afterModelCall");
  const onError = all("onModelCallError");
  const beforeTool = all("beforeToolCall");
  const afterTool = all("afterToolCall");
  const checkpoint = all("onCheckpoint");

  const composed: AgentHooks = {};
  if (before.length > 0) {
    composed.beforeModelCall = async (info) => {
      let maxTokens: number | undefined;
      for (const hook of before) {
        const out = await hook(info);
        if (out?.maxTokens !== undefined)
          maxTokens = maxTokens === undefined ? out.maxTokens : Math.min(maxTokens, out.maxTokens);
      }
      return maxTokens === undefined ? undefined : { maxTokens };
    };
  }
  if (after.length > 0) composed.afterModelCall = charged(after);
  if (onError.length > 0) composed.onModelCallError = charged(onError);
  if (beforeTool.length > 0) {
    composed.beforeToolCall = async (info) => {
      let winner: ToolCallDecision = { type: "allow" };
      for (const hook of beforeTool) {
        const decision = await hook(info);
        if (DECISION_RANK[decision.type] > DECISION_RANK[winner.type]) winner = decision;
      }
      return winner;
    };
  }
  if (afterTool.length > 0) composed.afterToolCall = sequence(afterTool);
  if (checkpoint.length > 0) composed.onCheckpoint = sequence(checkpoint);
  return composed;
}

/** Runs the hooks in order and adds up what they charged; no charge when none did. */
function charged<A>(
  fns: ((arg: A) => Promise<ModelCallCharge | void>)[],
): (arg: A) => Promise<ModelCallCharge | void> {
  return async (arg) => {
    let total: number | undefined;
    for (const fn of fns) {
      const charge = await fn(arg);
      if (charge) total = (total ?? 0) + charge.costMicroUsd;
    }
    return total === undefined ? undefined : { costMicroUsd: total };
  };
}

function sequence<A>(fns: ((arg: A) => Promise<void>)[]): (arg: A) => Promise<void> {
  return async (arg) => {
    for (const fn of fns) await fn(arg);
  };
}
