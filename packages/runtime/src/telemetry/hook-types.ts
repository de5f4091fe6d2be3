import type { AgentHooks } from "@agentry/agent";

export type { ModelCallInfo, RunContext, ToolCallDecision, ToolCallInfo } from "@agentry/agent";

/** The hooks `createTracingHooks` returns: the model- and tool-call hooks of `AgentHooks`, all present. */
export type TelemetryHooks = Required<
  Pick<
    AgentHooks,
    "beforeModelCall" | "afterModelCall" | "onModelCallError" | "beforeToolCall" | "afterToolCall"
  >
>;
