import { AgentryError } from "@agentry/core";
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AnthropicError,
} from "@anthropic-ai/sdk";

/**
 * Reads how long a provider asked us to wait: `retry-after-ms` (milliseconds, Anthropic's own),
 * else `retry-after` as seconds or as an HTTP date. Rounded up to whole milliseconds; a date in
 * the past gives 0; an unreadable value gives `undefined`.
 */
export function parseRetryAfterMs(
  headers: Headers | undefined,
  now: number = Date.now(),
): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "") {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return Math.ceil(value);
  }
  const after = headers.get("retry-after");
  if (after === null || after.trim() === "") return undefined;
  const seconds = Number(after);
  if (Number.isFinite(seconds)) return seconds >= 0 ? Math.ceil(seconds * 1000) : undefined;
  const date = Date.parse(after);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil(date - now));
}

/** What the adapter knows about the call that failed. */
export interface ErrorContext {
  model: string;
  signal?: AbortSignal | undefined;
  now?: () => number;
}

/**
 * Maps anything `messages.create` throws to an `AgentryError`:
 * 429 → `PROVIDER_RATE_LIMITED` (+`retryAfterMs`); 529 → `PROVIDER_OVERLOADED`;
 * 408/409/5xx, connection failures and timeouts → `PROVIDER_UNAVAILABLE` (all retryable);
 * 401/402/403 → `PROVIDER_AUTH`; a 404 `not_found_error` from the Messages endpoint (which exists,
 * so the thing not found is the model) → `UNKNOWN_MODEL`; other 4xx → `PROVIDER_BAD_REQUEST`
 * (not retryable, provider message kept); an unreadable success body → `PROVIDER_BAD_RESPONSE`
 * (retryable); abort → `CANCELLED`.
 */
export function mapAnthropicError(err: unknown, context: ErrorContext): AgentryError {
  if (AgentryError.isInstance(err)) return err;
  if (err instanceof APIUserAbortError || (context.signal?.aborted ?? false)) {
    return new AgentryError("CANCELLED", "Model call was aborted", {
      cause: err,
      details: { model: context.model },
    });
  }
  if (err instanceof APIConnectionTimeoutError) {
    return new AgentryError("PROVIDER_UNAVAILABLE", "Anthropic request timed out", {
      retryable: true,
      cause: err,
      details: { model: context.model, reason: "timeout" },
    });
  }
  if (err instanceof APIConnectionError) {
    return new AgentryError("PROVIDER_UNAVAILABLE", `Could not reach Anthropic: ${err.message}`, {
      retryable: true,
      cause: err,
      details: { model: context.model, reason: "connection" },
    });
  }
  if (err instanceof APIError && typeof err.status === "number") {
    return mapStatus(err, err.status, context);
  }
  if (err instanceof SyntaxError) {
    return new AgentryError(
      "PROVIDER_BAD_RESPONSE",
      `Anthropic answered with a body that is not JSON: ${err.message}`,
      {
        retryable: true,
        cause: err,
        details: { model: context.model },
      },
    );
  }
  if (err instanceof AnthropicError) {
    return new AgentryError("PROVIDER_BAD_REQUEST", `Anthropic SDK refused the request: ${err.message}`, {
      retryable: false,
      cause: err,
      details: { model: context.model },
    });
  }
  return AgentryError.from(err, "INTERNAL");
}

/**
 * Maps anything `messages.countTokens` throws. A budget asks for the count only when its estimate
 * could undershoot near a limit, so it must not guess instead: every failure but `CANCELLED` is a
 * retryable provider error (the task is retried later, no model call is made). Transient failures
 * keep their code (`PROVIDER_RATE_LIMITED` with `retryAfterMs`, `PROVIDER_UNAVAILABLE`, ...); a
 * refusal that would not be retryable on the Messages endpoint (a gateway without the counting
 * endpoint answers 404, for example) becomes a retryable `PROVIDER_UNAVAILABLE` that keeps the
 * original code in `details.countCode`. Every error says `details.operation: "count_tokens"`.
 */
export function mapCountTokensError(err: unknown, context: ErrorContext): AgentryError {
  const mapped = mapAnthropicError(err, context);
  if (mapped.code === "CANCELLED") return mapped;
  const details = { ...mapped.details, operation: "count_tokens" };
  const retry = mapped.retryAfterMs === undefined ? {} : { retryAfterMs: mapped.retryAfterMs };
  if (mapped.retryable) {
    return new AgentryError(mapped.code, `Token count failed: ${mapped.message}`, {
      category: mapped.category,
      retryable: true,
      ...retry,
      details,
      cause: mapped,
    });
  }
  return new AgentryError("PROVIDER_UNAVAILABLE", `Token count failed: ${mapped.message}`, {
    retryable: true,
    ...retry,
    details: { ...details, countCode: mapped.code },
    cause: mapped,
  });
}

/**
 * An HTTP status → its AgentryError. A streamed `error` event (`streamed`) comes with the status
 * its error type stands for; its details then carry `streamed: true` instead of a status.
 */
function mapStatus(err: APIError, status: number, context: ErrorContext, streamed = false): AgentryError {
  const providerMessage = err.apiMessage ?? err.message;
  const details: Record<string, unknown> = {
    model: context.model,
    ...(streamed ? { streamed: true } : { status }),
    providerType: err.type,
    providerMessage,
    requestId: err.requestID ?? null,
  };
  const message = `Anthropic ${streamed ? "stream error" : status}${err.type ? ` ${err.type}` : ""}: ${providerMessage}`;
  const retryAfterMs = parseRetryAfterMs(err.headers, context.now?.() ?? Date.now());
  const retry = retryAfterMs === undefined ? {} : { retryAfterMs };
  if (status === 429)
    return new AgentryError("PROVIDER_RATE_LIMITED", message, {
      retryable: true,
      ...retry,
      details,
      cause: err,
    });
  if (status === 529)
    return new AgentryError("PROVIDER_OVERLOADED", message, {
      retryable: true,
      ...retry,
      details,
      cause: err,
    });
  if (status >= 500 || status === 408 || status === 409) {
    return new AgentryError("PROVIDER_UNAVAILABLE", message, {
      retryable: true,
      ...retry,
      details,
      cause: err,
    });
  }
  if (status === 401 || status === 402 || status === 403)
    return new AgentryError("PROVIDER_AUTH", message, { retryable: false, details, cause: err });
  if (status === 404 && err.type === "not_found_error") {
    return new AgentryError(
      "UNKNOWN_MODEL",
      `Anthropic does not know model "${context.model}": ${providerMessage}`,
      {
        retryable: false,
        details,
        cause: err,
      },
    );
  }
  return new AgentryError("PROVIDER_BAD_REQUEST", message, { retryable: false, details, cause: err });
}

/** The HTTP status each error type of Anthropic's error body is sent with. */
const ERROR_TYPE_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

/** What the streaming call knows when it fails. */
export interface StreamErrorContext extends ErrorContext {
  /** The response headers had arrived: the failure happened while reading the event stream. */
  connected: boolean;
}

/**
 * Maps anything a streamed `messages.stream` call throws. Before the response arrives the rules of
 * {@link mapAnthropicError} apply. An `error` event in the stream (HTTP 200 already sent) is mapped
 * by its error type as if it had come with that type's status (`overloaded_error` →
 * `PROVIDER_OVERLOADED`, `rate_limit_error` → `PROVIDER_RATE_LIMITED`, an unknown type →
 * `PROVIDER_UNAVAILABLE`). An event that is not JSON → `PROVIDER_BAD_RESPONSE`. Any other failure
 * once connected (the connection reset, the stream cut off) → `PROVIDER_UNAVAILABLE` with
 * `details.reason: "stream_interrupted"`; all of these are retryable.
 */
export function mapStreamError(err: unknown, context: StreamErrorContext): AgentryError {
  if (
    AgentryError.isInstance(err) ||
    err instanceof APIUserAbortError ||
    err instanceof APIConnectionError ||
    (context.signal?.aborted ?? false)
  ) {
    return mapAnthropicError(err, context);
  }
  if (err instanceof APIError && err.status === undefined) {
    return mapStatus(err, ERROR_TYPE_STATUS[err.type ?? ""] ?? 500, context, true);
  }
  const cause = err instanceof Error ? err.cause : undefined;
  if (err instanceof SyntaxError || cause instanceof SyntaxError) {
    return new AgentryError(
      "PROVIDER_BAD_RESPONSE",
      `Anthropic sent a stream event that is not JSON: ${(cause instanceof SyntaxError ? cause : (err as Error)).message}`,
      {
        retryable: true,
        cause: err,
        details: { model: context.model },
      },
    );
  }
  if (!context.connected) return mapAnthropicError(err, context);
  return new AgentryError(
    "PROVIDER_UNAVAILABLE",
    `Anthropic stream was interrupted: ${err instanceof Error ? err.message : String(err)}`,
    {
      retryable: true,
      cause: err,
      details: { model: context.model, reason: "stream_interrupted" },
    },
  );
}
