import * as semconv from "@opentelemetry/semantic-conventions/incubating";
import { describe, expect, it } from "vitest";
import { AnthropicModel } from "@agentry/llm";
import { GenAIAttr, GenAIOperation, usageAttributes } from "./attributes.js";

/** The package constant each GenAI name here is a copy of. */
const CONSTANT_OF: Record<keyof typeof GenAIAttr, keyof typeof semconv> = {
  operationName: "ATTR_GEN_AI_OPERATION_NAME",
  system: "ATTR_GEN_AI_SYSTEM",
  providerName: "ATTR_GEN_AI_PROVIDER_NAME",
  agentName: "ATTR_GEN_AI_AGENT_NAME",
  conversationId: "ATTR_GEN_AI_CONVERSATION_ID",
  requestModel: "ATTR_GEN_AI_REQUEST_MODEL",
  requestMaxTokens: "ATTR_GEN_AI_REQUEST_MAX_TOKENS",
  requestTemperature: "ATTR_GEN_AI_REQUEST_TEMPERATURE",
  responseModel: "ATTR_GEN_AI_RESPONSE_MODEL",
  responseId: "ATTR_GEN_AI_RESPONSE_ID",
  responseFinishReasons: "ATTR_GEN_AI_RESPONSE_FINISH_REASONS",
  usageInputTokens: "ATTR_GEN_AI_USAGE_INPUT_TOKENS",
  usageOutputTokens: "ATTR_GEN_AI_USAGE_OUTPUT_TOKENS",
  usageCacheCreationInputTokens: "ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS",
  usageCacheReadInputTokens: "ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
  toolName: "ATTR_GEN_AI_TOOL_NAME",
  toolCallId: "ATTR_GEN_AI_TOOL_CALL_ID",
  toolType: "ATTR_GEN_AI_TOOL_TYPE",
  errorType: "ATTR_ERROR_TYPE",
};

describe("GenAI attribute names", () => {
  it.each(Object.entries(CONSTANT_OF))("%s is the semantic-conventions package's %s", (name, constant) => {
    expect(semconv[constant]).toBeTypeOf("string");
    expect(GenAIAttr[name as keyof typeof GenAIAttr]).toBe(semconv[constant]);
  });

  it("operation names are the package's values", () => {
    expect(GenAIOperation).toEqual({
      invokeAgent: semconv.GEN_AI_OPERATION_NAME_VALUE_INVOKE_AGENT,
      chat: semconv.GEN_AI_OPERATION_NAME_VALUE_CHAT,
      executeTool: semconv.GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL,
    });
  });

  it("the Anthropic adapter's provider, which becomes gen_ai.provider.name, is the package's value", () => {
    expect(new AnthropicModel({ apiKey: "sk-ant-test" }).provider).toBe(
      semconv.GEN_AI_PROVIDER_NAME_VALUE_ANTHROPIC,
    );
  });

  it("input tokens count cache writes and reads too, and the cache parts are also given apart", () => {
    expect(usageAttributes({ input: 10, output: 5, cacheCreationInput: 100, cacheReadInput: 1000 })).toEqual({
      "gen_ai.usage.input_tokens": 1110,
      "gen_ai.usage.output_tokens": 5,
      "gen_ai.usage.cache_creation.input_tokens": 100,
      "gen_ai.usage.cache_read.input_tokens": 1000,
    });
  });
});
