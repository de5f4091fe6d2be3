export * from "./model/types.js";
export {
  AnthropicModel,
  DEFAULT_MODEL,
  compileAnthropicModelOptions,
  type AnthropicModelOptions,
  type CompiledAnthropicModelOptions,
} from "./anthropic/anthropic-model.js";
export {
  PRICING_AS_OF,
  CLAUDE_PRICING,
  CLAUDE_MODEL_ALIASES,
  type ModelRates,
} from "./pricing/pricing-table.js";
export {
  createPricing,
  defaultPricing,
  costMicroUsd,
  maxCostMicroUsd,
  type Pricing,
  type PricingOptions,
} from "./pricing/pricing.js";
export {
  estimateTextTokens,
  estimateInputTokens,
  estimateRequestTokens,
} from "./estimate/estimate-tokens.js";
export {
  ScriptedModel,
  scriptedText,
  scriptedToolUse,
  scriptedError,
  type ScriptedModelOptions,
  type ScriptedStep,
  type ScriptedReply,
  type ScriptedFailure,
  type ScriptedBlock,
} from "./scripted/scripted-model.js";
export {
  answerByRules,
  clipText,
  scriptedTurn,
  toolResultLine,
  type ScriptedRule,
  type ScriptedToolResult,
  type ScriptedTurn,
} from "./scripted/rules.js";
export { createLanguageModel, type LanguageModelConfig } from "./factory/create-language-model.js";
