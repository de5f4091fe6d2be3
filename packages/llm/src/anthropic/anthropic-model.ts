import Anthropic from "@anthropic-ai/sdk";
import { AgentryError } from "@agentry/core";
import type { LanguageModel, ModelRequest, ModelResponse, TokenCountRequest } from "../model/types.js";
import { mapAnthropicError, mapCountTokensError } from "./map-error.js";
import { toCountTokensParams, toCreateParams } from "./map-request.js";
import { fromMessage } from "./map-response.js";

/** The model used when neither the request nor the options name one. */
export const DEFAULT_MODEL = "claude-sonnet-4-6";

/** Options for {@link AnthropicModel}. */
export interface AnthropicModelOptions {
  /**
   * API key. Pass it explicitly (apps read `ANTHROPIC_API_KEY` once at their edge).
   * @defaultValue the SDK's own credential resolution (`ANTHROPIC_API_KEY`, then profiles)
   */
  apiKey?: string;
  /** @defaultValue the SDK's (`ANTHROPIC_BASE_URL`, else `https://api.anthropic.com`) */
  baseURL?: string;
  /** Model for requests that name none. @defaultValue {@link DEFAULT_MODEL} */
  defaultModel?: string;
  /**
   * Retries inside the SDK. Agentry's queue retries failed steps itself, with the task's
   * checkpoint, budget settlement and a queue-wide rate limit on 429; SDK retries underneath would
   * multiply attempts, hold a worker slot while sleeping and hide 429s from the rate limiter.
   * Raise it only for use outside the runtime.
   * @defaultValue 0
   */
  maxRetries?: number;
  /**
   * Timeout of one HTTP attempt. Always set, so the SDK never refuses a large `max_tokens`
   * non-streaming call for want of a timeout.
   * @defaultValue 600_000 (10 minutes)
   */
  timeoutMs?: number;
  /** Internal. For test use only. May change without notice. */
  _internal?: { now?: () => number };
}

/** {@link AnthropicModelOptions} with every default applied. */
export interface CompiledAnthropicModelOptions {
  apiKey: string | undefined;
  baseURL: string | undefined;
  defaultModel: string;
  maxRetries: number;
  timeoutMs: number;
  now: () => number;
}

/** Applies the defaults of {@link AnthropicModelOptions}. */
export function compileAnthropicModelOptions(
  options: AnthropicModelOptions = {},
): CompiledAnthropicModelOptions {
  return {
    apiKey: options.apiKey,
    baseURL: options.baseURL,
    defaultModel: options.defaultModel ?? DEFAULT_MODEL,
    maxRetries: options.maxRetries ?? 0,
    timeoutMs: options.timeoutMs ?? 600_000,
    now: options._internal?.now ?? Date.now,
  };
}

/**
 * The LanguageModel on Anthropic's Messages API through `@anthropic-ai/sdk`. Non-streaming.
 * Every failure is thrown as an `AgentryError` (see `mapAnthropicError`).
 */
export class AnthropicModel implements LanguageModel {
  readonly provider = "anthropic";
  readonly defaultModel: string;
  readonly #client: Anthropic;
  readonly #options: CompiledAnthropicModelOptions;

  constructor(options: AnthropicModelOptions = {}) {
    this.#options = compileAnthropicModelOptions(options);
    this.defaultModel = this.#options.defaultModel;
    this.#client = new Anthropic({
      ...(this.#options.apiKey === undefined ? {} : { apiKey: this.#options.apiKey }),
      ...(this.#options.baseURL === undefined ? {} : { baseURL: this.#options.baseURL }),
      maxRetries: this.#options.maxRetries,
      timeout: this.#options.timeoutMs,
    });
  }

  async generate(request: ModelRequest): Promise<ModelResponse> {
    const model = request.model ?? this.defaultModel;
    const params = toCreateParams(request, model);
    let body: unknown;
    let requestId: string | null | undefined;
    try {
      const { data, request_id } = await this.#client.messages
        .create(params, request.signal === undefined ? {} : { signal: request.signal })
        .withResponse();
      body = data;
      requestId = request_id;
    } catch (err) {
      throw mapAnthropicError(err, { model, signal: request.signal, now: this.#options.now });
    }
    return fromMessage(body, requestId);
  }

  /**
   * The prompt tokens Anthropic will bill for this request, from `POST /v1/messages/count_tokens`
   * on the same params `generate` sends (the endpoint is free, with its own rate limit). Failures
   * are retryable (see `mapCountTokensError`), so a caller that needs the figure fails closed.
   */
  async countInputTokens(request: TokenCountRequest): Promise<number> {
    const model = request.model ?? this.defaultModel;
    let body: unknown;
    try {
      body = await this.#client.messages.countTokens(
        toCountTokensParams(request, model),
        request.signal === undefined ? {} : { signal: request.signal },
      );
    } catch (err) {
      throw mapCountTokensError(err, { model, signal: request.signal, now: this.#options.now });
    }
    const count = (body as { input_tokens?: unknown } | null)?.input_tokens;
    if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 0) {
      throw new AgentryError(
        "PROVIDER_BAD_RESPONSE",
        "Anthropic token count answered without a valid input_tokens",
        {
          retryable: true,
          details: { model, operation: "count_tokens" },
        },
      );
    }
    return count;
  }
}
