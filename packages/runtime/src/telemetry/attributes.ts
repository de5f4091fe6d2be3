import type { Attributes } from "@opentelemetry/api";
import type { Usage } from "@agentry/llm";

/**
 * Span attribute names of the OpenTelemetry GenAI semantic conventions, copied from the
 * `@opentelemetry/semantic-conventions/incubating` entry (`ATTR_GEN_AI_*`, `ATTR_ERROR_TYPE`), as
 * that package advises for its unstable entry: it may rename or drop a constant in a minor
 * release, and it marks the GenAI ones deprecated since those conventions moved to their own
 * repository. `attributes.test.ts` holds every name here equal to the package's constant, so an
 * upgrade of the package that changes one fails there.
 */
export const GenAIAttr = {
  operationName: "gen_ai.operation.name",
  /** Deprecated by the conventions in favour of `gen_ai.provider.name`; still set for older backends. */
  system: "gen_ai.system",
  providerName: "gen_ai.provider.name",
  agentName: "gen_ai.agent.name",
  conversationId: "gen_ai.conversation.id",
  requestModel: "gen_ai.request.model",
  requestMaxTokens: "gen_ai.request.max_tokens",
  requestTemperature: "gen_ai.request.temperature",
  responseModel: "gen_ai.response.model",
  responseId: "gen_ai.response.id",
  responseFinishReasons: "gen_ai.response.finish_reasons",
  /** All input tokens, cached ones included (the conventions say so; Anthropic's `input_tokens` excludes them). */
  usageInputTokens: "gen_ai.usage.input_tokens",
  usageOutputTokens: "gen_ai.usage.output_tokens",
  usageCacheCreationInputTokens: "gen_ai.usage.cache_creation.input_tokens",
  usageCacheReadInputTokens: "gen_ai.usage.cache_read.input_tokens",
  toolName: "gen_ai.tool.name",
  toolCallId: "gen_ai.tool.call.id",
  toolType: "gen_ai.tool.type",
  errorType: "error.type",
} as const;

/** Values of `gen_ai.operation.name` that Agentry emits. */
export const GenAIOperation = {
  invokeAgent: "invoke_agent",
  chat: "chat",
  executeTool: "execute_tool",
} as const;

/**
 * The usage attributes of a span (`chat` per call, `invoke_agent` for the task):
 * `gen_ai.usage.input_tokens` counts every input token, cache writes and reads included, as the
 * conventions ask (Anthropic's `input_tokens` excludes them); the cache parts are also given apart.
 */
export function usageAttributes(usage: Usage): Attributes {
  return {
    [GenAIAttr.usageInputTokens]: usage.input + usage.cacheCreationInput + usage.cacheReadInput,
    [GenAIAttr.usageOutputTokens]: usage.output,
    [GenAIAttr.usageCacheCreationInputTokens]: usage.cacheCreationInput,
    [GenAIAttr.usageCacheReadInputTokens]: usage.cacheReadInput,
  };
}

/** Agentry's own span attributes. */
export const AgentryAttr = {
  tenant: "agentry.tenant",
  userId: "agentry.user_id",
  sessionId: "agentry.session_id",
  taskId: "agentry.task_id",
  /** 1-based model-call number within the task. */
  step: "agentry.step",
  /** Cost in micro-USD (integer), the ledger's unit: of one model call on `chat`, of the task on `invoke_agent`. */
  costMicroUsd: "agentry.cost_micro_usd",
  /** Final decision on a tool call: allow, deny or suspend. */
  toolDecision: "agentry.tool.decision",
  toolDenyReason: "agentry.tool.deny_reason",
  toolDenyPolicy: "agentry.tool.deny_policy",
  /** Reason of the suspension a resumed tool call comes back from (e.g. approval). */
  toolPreviousSuspension: "agentry.tool.previous_suspension",
  /** Set on a span the run ended before its hook closed it. */
  unfinished: "agentry.unfinished",
  /** Why a link was added (e.g. `resumed`). */
  linkReason: "agentry.link.reason",
  /** Set on `invoke_agent` when the run ended by a queue control-flow signal (delayed, rate limited). */
  controlFlow: "agentry.control_flow",
} as const;
