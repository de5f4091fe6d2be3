import { AgentryError } from "@agentry/core";
import { AnthropicModel, DEFAULT_MODEL } from "../anthropic/anthropic-model.js";
import type { LanguageModel } from "../model/types.js";
import { ScriptedModel, type ScriptedModelOptions } from "../scripted/scripted-model.js";

/**
 * Which model an app runs on, from its parsed environment:
 * `{ llm: env.AGENTRY_LLM, apiKey: env.ANTHROPIC_API_KEY, baseURL: env.ANTHROPIC_BASE_URL, model: env.AGENTRY_MODEL }`.
 */
export interface LanguageModelConfig {
  llm: "anthropic" | "scripted";
  apiKey?: string | undefined;
  baseURL?: string | undefined;
  /** @defaultValue {@link DEFAULT_MODEL} (`claude-sonnet-4-6`) */
  model?: string | undefined;
  /** Passed to the Anthropic adapter. @defaultValue 0 (the queue retries) */
  maxRetries?: number;
  /** Passed to the Anthropic adapter. @defaultValue 600_000 */
  timeoutMs?: number;
  /** Passed to the Anthropic adapter: the longest silence of a streaming call. @defaultValue 60_000 */
  idleTimeoutMs?: number | undefined;
  /** Passed to the ScriptedModel (e.g. `latencyMs`). */
  scripted?: Omit<ScriptedModelOptions, "defaultModel">;
}

/**
 * Builds the LanguageModel an app asked for. `anthropic` needs an API key, or a `baseURL`
 * (a gateway or the fake Messages API) that does its own authentication; then a placeholder key
 * is sent. Throws `INVALID_CONFIG` otherwise.
 */
export function createLanguageModel(config: LanguageModelConfig): LanguageModel {
  const defaultModel = config.model ?? DEFAULT_MODEL;
  switch (config.llm) {
    case "scripted":
      return new ScriptedModel({ ...config.scripted, defaultModel });
    case "anthropic": {
      if (!config.apiKey && !config.baseURL) {
        throw new AgentryError(
          "INVALID_CONFIG",
          "The anthropic model needs ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for a gateway)",
        );
      }
      return new AnthropicModel({
        apiKey: config.apiKey || "agentry-no-api-key",
        ...(config.baseURL ? { baseURL: config.baseURL } : {}),
        defaultModel,
        ...(config.maxRetries === undefined ? {} : { maxRetries: config.maxRetries }),
        ...(config.timeoutMs === undefined ? {} : { timeoutMs: config.timeoutMs }),
        ...(config.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: config.idleTimeoutMs }),
      });
    }
    default: {
      const never: never = config.llm;
      throw new AgentryError(
        "INVALID_CONFIG",
        `Unknown llm "${String(never)}" (expected anthropic or scripted)`,
      );
    }
  }
}
