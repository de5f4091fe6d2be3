import Anthropic, { AnthropicError, APIError } from "@anthropic-ai/sdk";
import { AgentryError } from "@agentry/core";
import type {
  LanguageModel,
  ModelRequest,
  ModelResponse,
  TextDelta,
  TokenCountRequest,
} from "../model/types.js";
import { mapCountTokensError, mapStreamError } from "./map-error.js";
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
   * How long one HTTP attempt may wait for the response headers (the SDK's `timeout`); a streamed
   * answer is then bounded by `idleTimeoutMs` between its events, not by a whole-call timeout.
   * @defaultValue 600_000 (10 minutes)
   */
  timeoutMs?: number;
  /**
   * Longest silence of a streaming call: from the request until its first event, and between two
   * events. Past it the call is aborted and fails with a retryable `PROVIDER_UNAVAILABLE`
   * (`details.reason: "idle_timeout"`), so the queue retries it like any transient provider error.
   * The API's `ping` keep-alives do not reach the SDK's stream helper and do not count as events.
   * @defaultValue 60_000
   */
  idleTimeoutMs?: number;
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
  idleTimeoutMs: number;
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
    idleTimeoutMs: positiveMs(options.idleTimeoutMs ?? 60_000, "idleTimeoutMs"),
    now: options._internal?.now ?? Date.now,
  };
}

function positiveMs(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `${name} must be a positive whole number of milliseconds, got ${value}`,
    );
  }
  return value;
}

/**
 * The LanguageModel on Anthropic's Messages API through `@anthropic-ai/sdk`. Every call streams
 * (the SDK's `messages.stream` helper): text reaches `onTextDelta` as it is generated, a silence
 * longer than `idleTimeoutMs` fails the call, and the response, usage included, is the stream's
 * final message, so cache writes and reads are exactly what the provider reported. Every failure
 * is thrown as an `AgentryError` (see `mapAnthropicError` and `mapStreamError`).
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
    const idleMs = this.#options.idleTimeoutMs;
    const stream = this.#client.messages.stream(
      toCreateParams(request, model),
      request.signal === undefined ? {} : { signal: request.signal },
    );
    let idle = false;
    // One timer, restarted by every event (cheaper than a new timer per event).
    const timer = setTimeout(() => {
      idle = true;
      stream.abort();
    }, idleMs);
    const emit = textEmitter(request.onTextDelta);
    let started = false;
    // Listeners run as each event is parsed, in order (no iterator queue between the socket and the caller).
    stream.on("streamEvent", (event) => {
      timer.refresh();
      switch (event.type) {
        case "message_start":
          started = true;
          break;
        case "content_block_start":
          if (event.content_block.type === "text") emit.block(event.index, event.content_block.text);
          break;
        case "content_block_delta":
          if (event.delta.type === "text_delta") emit.delta(event.index, event.delta.text);
          break;
        default:
          break;
      }
    });
    let message: unknown;
    try {
      message = await stream.finalMessage();
    } catch (err) {
      if (idle) {
        throw new AgentryError("PROVIDER_UNAVAILABLE", `Anthropic stream sent no event for ${idleMs} ms`, {
          retryable: true,
          cause: err,
          details: {
            model,
            reason: "idle_timeout",
            idleTimeoutMs: idleMs,
            requestId: stream.request_id ?? null,
          },
        });
      }
      const connected = stream.response !== undefined;
      if (connected && isEndOfStream(err) && !(request.signal?.aborted ?? false)) {
        // Answered 200, but the events ended without a whole message: nothing that was a message
        // stream (a bad response), or one cut short (transient).
        if (!started) throw badStream("the stream ended before message_start", model);
        throw new AgentryError("PROVIDER_UNAVAILABLE", "Anthropic stream ended before message_stop", {
          retryable: true,
          cause: err,
          details: { model, reason: "stream_interrupted", requestId: stream.request_id ?? null },
        });
      }
      throw mapStreamError(err, { model, signal: request.signal, now: this.#options.now, connected });
    } finally {
      clearTimeout(timer);
    }
    return fromMessage(message, stream.request_id);
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

/**
 * The stream helper's own complaint that the events ended without a whole message ("request
 * ended without sending any chunks", "stream ended without producing a Message": an
 * `AnthropicError` with no cause), as opposed to an API error or a failure it wraps.
 */
function isEndOfStream(err: unknown): boolean {
  return err instanceof AnthropicError && !(err instanceof APIError) && err.cause === undefined;
}

function badStream(what: string, model: string): AgentryError {
  return new AgentryError("PROVIDER_BAD_RESPONSE", `Anthropic stream is malformed: ${what}`, {
    retryable: true,
    details: { model },
  });
}

/**
 * Turns the stream's text events into {@link TextDelta}s of the response's text (text blocks
 * joined with "\n"): tracks the offset, sends the separator when a text block follows another,
 * and ignores deltas of blocks that are not text. A throwing callback is ignored.
 */
function textEmitter(onTextDelta: ((delta: TextDelta) => void) | undefined): {
  block(index: number, initial: string): void;
  delta(index: number, text: string): void;
} {
  const textBlocks = new Set<number>();
  let offset = 0;
  const send = (text: string) => {
    if (text.length === 0 || onTextDelta === undefined) return;
    try {
      onTextDelta({ offset, text });
    } catch {
      // The callback's failure is the caller's; the call goes on.
    }
    offset += text.length;
  };
  return {
    block(index, initial) {
      if (textBlocks.size > 0) send("\n");
      textBlocks.add(index);
      send(initial);
    },
    delta(index, text) {
      if (textBlocks.has(index)) send(text);
    },
  };
}
