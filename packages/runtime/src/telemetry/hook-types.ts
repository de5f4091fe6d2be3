import type { ModelRequest, ModelResponse, ToolResultBlock, ToolUseBlock } from "@agentry/llm";

/*
 * Structural copies of the hook contract of `@agentry/agent` (packages/agent/src/loop/hooks.ts).
 * They exist only until `@agentry/agent` exports `AgentHooks`; then these become re-exports of it.
 * Being structural, the hooks built here already type-check where `AgentHooks` is expected.
 */

/** What a `beforeToolCall` hook decides about one tool call (mirror of `@agentry/agent`). */
export type ToolCallDecision =
  | { type: "allow" }
  | { type: "deny"; reason: string; policy?: string }
  | { type: "suspend"; reason: string; data?: Record<string, unknown> };

/** Who and what a run is for (mirror of `@agentry/agent`). */
export interface RunContext {
  taskId: string;
  tenant: string;
  userId: string;
  sessionId: string;
  attributes?: Record<string, string>;
}

/** One model call (mirror of `@agentry/agent`). */
export interface ModelCallInfo {
  run: RunContext;
  step: number;
  request: ModelRequest;
}

/** One tool call (mirror of `@agentry/agent`). */
export interface ToolCallInfo {
  run: RunContext;
  step: number;
  call: ToolUseBlock;
  previousSuspension?: { reason: string; data?: Record<string, unknown> };
}

/** The telemetry-relevant subset of `AgentHooks` from `@agentry/agent`. */
export interface TelemetryHooks {
  beforeModelCall(info: ModelCallInfo): Promise<{ maxTokens?: number } | void>;
  afterModelCall(info: ModelCallInfo & { response: ModelResponse; durationMs: number }): Promise<void>;
  onModelCallError(info: ModelCallInfo & { error: unknown }): Promise<void>;
  beforeToolCall(info: ToolCallInfo): Promise<ToolCallDecision>;
  afterToolCall(info: ToolCallInfo & { result: ToolResultBlock; durationMs: number; decision: ToolCallDecision }): Promise<void>;
}
