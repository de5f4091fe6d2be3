import { AgentryError, type ErrorCode } from "@agentry/core";

/** One invalid field of a request, as listed in a 400 answer. */
export interface FieldError {
  /** Dotted path into the body (`tasks.0.prompt`), `(root)` for the body itself. */
  path: string;
  message: string;
}

/** The JSON body of every error answer: `{ error: { code, message, fields? } }`. */
export interface HttpErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    /** Present with `INVALID_INPUT`: every invalid field. */
    fields?: FieldError[];
    /** Present when the caller should wait before trying again. */
    retryAfterMs?: number;
  };
}

/** An error answer: status, body and extra headers. */
export interface HttpError {
  status: number;
  body: HttpErrorBody;
  headers: Record<string, string>;
}

/**
 * The HTTP status of an Agentry error code. Exhaustive over the closed code union, so a new code
 * cannot ship without a decision here.
 */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case "INVALID_INPUT":
      return 400;
    case "UNAUTHORIZED":
      return 401;
    case "BUDGET_EXCEEDED":
      return 402;
    case "POLICY_DENIED":
      return 403;
    case "NOT_FOUND":
      return 404;
    case "CONFLICT":
    case "CANCELLED":
    case "APPROVAL_EXPIRED":
    case "APPROVAL_REJECTED":
    case "APPROVAL_INVALID":
    case "SESSION_BUSY":
      return 409;
    case "PAYLOAD_TOO_LARGE":
      return 413;
    case "PROVIDER_RATE_LIMITED":
    case "RATE_LIMITED":
      return 429;
    case "PROVIDER_BAD_RESPONSE":
      return 502;
    case "REDIS_UNAVAILABLE":
    case "PROVIDER_OVERLOADED":
    case "PROVIDER_UNAVAILABLE":
    case "BUDGET_CONTENDED":
      return 503;
    case "TIMEOUT":
      return 504;
    case "INVALID_CONFIG":
    case "TOOL_FAILED":
    case "TOOL_TIMEOUT":
    case "STEP_LIMIT":
    case "PROVIDER_BAD_REQUEST":
    case "PROVIDER_AUTH":
    case "UNKNOWN_MODEL":
    case "AUDIT_FAILED":
    case "LOCK_LOST":
    case "INTERNAL":
      return 500;
  }
}

/** Fastify's own request errors (body parsing, size, media type) carry a `statusCode` and an `FST_` code. */
function frameworkStatus(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { statusCode, code } = err as { statusCode?: unknown; code?: unknown };
  if (typeof statusCode !== "number" || statusCode < 400 || statusCode >= 500) return undefined;
  // JSON syntax errors from Fastify's parser have statusCode 400 but no FST_ code.
  if (typeof code === "string" && !code.startsWith("FST_")) return undefined;
  return statusCode;
}

/**
 * Maps anything thrown while serving a request to its answer. The one place where errors become
 * HTTP: AgentryError codes by {@link httpStatusOf}; Fastify's body errors (too large → 413,
 * unparsable or unsupported body → 400 `INVALID_INPUT`); anything else → 500 `INTERNAL` with a
 * generic message (never a stack or an internal message).
 */
export function httpErrorOf(err: unknown): HttpError {
  if (AgentryError.isInstance(err)) {
    const status = httpStatusOf(err.code);
    const headers: Record<string, string> = {};
    if (err.retryAfterMs !== undefined)
      headers["retry-after"] = String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
    else if (status === 503) headers["retry-after"] = "1";
    if (status === 401) headers["www-authenticate"] = 'Bearer realm="agentry"';
    const message = status === 500 && err.code === "INTERNAL" ? "Internal error" : err.message;
    const body: HttpErrorBody = { error: { code: err.code, message } };
    if (err.code === "INVALID_INPUT")
      body.error.fields = fieldsOf(err) ?? [{ path: "(root)", message: err.message }];
    if (err.retryAfterMs !== undefined) body.error.retryAfterMs = err.retryAfterMs;
    return { status, body, headers };
  }
  const status = frameworkStatus(err);
  if (status === 413) {
    return {
      status,
      headers: {},
      body: { error: { code: "PAYLOAD_TOO_LARGE", message: "Request body is too large" } },
    };
  }
  if (status !== undefined) {
    const message = err instanceof Error ? err.message : "Invalid request";
    return {
      status: 400,
      headers: {},
      body: { error: { code: "INVALID_INPUT", message, fields: [{ path: "(body)", message }] } },
    };
  }
  if (err instanceof SyntaxError) {
    const message = `Body is not valid JSON: ${err.message}`;
    return {
      status: 400,
      headers: {},
      body: { error: { code: "INVALID_INPUT", message, fields: [{ path: "(body)", message }] } },
    };
  }
  return { status: 500, headers: {}, body: { error: { code: "INTERNAL", message: "Internal error" } } };
}

function fieldsOf(err: AgentryError): FieldError[] | undefined {
  const fields = err.details?.["fields"];
  if (!Array.isArray(fields)) return undefined;
  return fields
    .filter((f): f is { path: unknown; message: unknown } => typeof f === "object" && f !== null)
    .map((f) => ({ path: String(f.path), message: String(f.message) }));
}
