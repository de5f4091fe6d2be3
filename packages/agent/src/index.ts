export { defineTool, type Tool, type ToolContext } from "./tools/tool.js";
export { ToolRegistry, type ToolRegistryOptions } from "./tools/registry.js";
export {
  composeHooks,
  type AgentHooks,
  type ModelCallCharge,
  type ModelCallInfo,
  type RunContext,
  type ToolCallDecision,
  type ToolCallInfo,
} from "./loop/hooks.js";
export { InMemoryToolJournal, type ToolJournal, type ToolJournalBegin } from "./loop/journal.js";
export { agentStateSchema, parseAgentState, type AgentState, type PendingToolCall } from "./loop/state.js";
export {
  runAgent,
  INTERRUPTED_TOOL_MESSAGE,
  type AgentResult,
  type RunAgentOptions,
  type StepTextDelta,
} from "./loop/run-agent.js";
export {
  rememberTool,
  recallTool,
  memoryNamespace,
  systemWithMemories,
  RECALL_HEADING,
  type MemoryLike,
  type MemoryNamespaceFn,
  type RecallToolOptions,
} from "./memory/memory-tools.js";
