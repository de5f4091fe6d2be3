/**
 * Every failure code Agentry can report. Closed: adding one is a deliberate change,
 * and every `switch` over it is exhaustive.
 */
export const ERROR_CODES = [
  "INVALID_INPUT",
  "INVALID_CONFIG",
  "NOT_FOUND",
  "CONFLICT",
  "UNAUTHORIZED",
  "PAYLOAD_TOO_LARGE",
  "BUDGET_EXCEEDED",
  "BUDGET_CONTENDED",
  "POLICY_DENIED",
  "APPROVAL_EXPIRED",
  "APPROVAL_REJECTED",
  "APPROVAL_INVALID",
  "TOOL_FAILED",
  "TOOL_TIMEOUT",
  "STEP_LIMIT",
  "SESSION_BUSY",
  "PROVIDER_RATE_LIMITED",
  "PROVIDER_OVERLOADED",
  "PROVIDER_UNAVAILABLE",
  "PROVIDER_BAD_REQUEST",
  "PROVIDER_AUTH",
  "PROVIDER_BAD_RESPONSE",
  "UNKNOWN_MODEL",
  "AUDIT_FAILED",
  "REDIS_UNAVAILABLE",
  "LOCK_LOST",
  "RATE_LIMITED",
  "CANCELLED",
  "TIMEOUT",
  "INTERNAL",
] as const;

/** A closed union of failure codes. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Who is at fault: the caller (user), Agentry or its infrastructure (system), or the model provider. */
export type ErrorCategory = "user" | "system" | "provider";

/**
 * Plain-data form of an error, safe to JSON-encode into a job or an HTTP body: this is what crosses
 * the queue. Validated by `agentryErrorDataSchema` (agentry-error-schema.ts).
 */
export interface AgentryErrorData {
  code: ErrorCode;
  message: string;
  category: ErrorCategory;
  retryable: boolean;
  retryAfterMs?: number | undefined;
  details?: Record<string, unknown> | undefined;
}

const BRAND = Symbol.for("agentry.error");

const DEFAULT_CATEGORY: Record<ErrorCode, ErrorCategory> = {
  INVALID_INPUT: "user",
  INVALID_CONFIG: "system",
  NOT_FOUND: "user",
  CONFLICT: "user",
  UNAUTHORIZED: "user",
  PAYLOAD_TOO_LARGE: "user",
  BUDGET_EXCEEDED: "user",
  BUDGET_CONTENDED: "system",
  POLICY_DENIED: "user",
  APPROVAL_EXPIRED: "user",
  APPROVAL_REJECTED: "user",
  APPROVAL_INVALID: "user",
  TOOL_FAILED: "system",
  TOOL_TIMEOUT: "system",
  STEP_LIMIT: "user",
  SESSION_BUSY: "system",
  PROVIDER_RATE_LIMITED: "provider",
  PROVIDER_OVERLOADED: "provider",
  PROVIDER_UNAVAILABLE: "provider",
  PROVIDER_BAD_REQUEST: "provider",
  PROVIDER_AUTH: "provider",
  PROVIDER_BAD_RESPONSE: "provider",
  UNKNOWN_MODEL: "system",
  AUDIT_FAILED: "system",
  REDIS_UNAVAILABLE: "system",
  LOCK_LOST: "system",
  RATE_LIMITED: "user",
  CANCELLED: "user",
  TIMEOUT: "system",
  INTERNAL: "system",
};

const DEFAULT_RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "BUDGET_CONTENDED",
  "SESSION_BUSY",
  "PROVIDER_RATE_LIMITED",
  "PROVIDER_OVERLOADED",
  "PROVIDER_UNAVAILABLE",
  "PROVIDER_BAD_RESPONSE",
  "AUDIT_FAILED",
  "REDIS_UNAVAILABLE",
  "RATE_LIMITED",
  "TIMEOUT",
]);

/** Options for {@link AgentryError}. Category and retryable default from the code. */
export interface AgentryErrorOptions {
  /** @defaultValue the code's usual category */
  category?: ErrorCategory;
  /** @defaultValue true for transient codes (rate limits, overload, Redis), else false */
  retryable?: boolean;
  /** How long the caller should wait before trying again, when the cause says so. */
  retryAfterMs?: number;
  /** Structured context (scope, figures, field paths). Must be JSON-serialisable. */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The one error base of Agentry. Branded with `Symbol.for` so that
 * {@link AgentryError.isInstance} works across duplicated package copies.
 */
export class AgentryError extends Error {
  readonly [BRAND] = true;
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AgentryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AgentryError";
    this.code = code;
    this.category = options.category ?? DEFAULT_CATEGORY[code];
    this.retryable = options.retryable ?? DEFAULT_RETRYABLE.has(code);
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }

  /** True for any AgentryError, whichever copy of this package made it. */
  static isInstance(value: unknown): value is AgentryError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }

  /** Plain data for crossing a process boundary. */
  toData(): AgentryErrorData {
    return {
      code: this.code,
      message: this.message,
      category: this.category,
      retryable: this.retryable,
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }

  /** Rebuilds an error from {@link AgentryErrorData}. */
  static fromData(data: AgentryErrorData): AgentryError {
    return new AgentryError(data.code, data.message, data);
  }

  /**
   * Wraps anything thrown into an AgentryError. An AgentryError passes through; a Redis error
   * that passes with time (see {@link isTransientRedisError}) becomes `REDIS_UNAVAILABLE`, which
   * is retryable; anything else becomes `INTERNAL` (or the given fallback code) with the original
   * as cause.
   */
  static from(value: unknown, fallback: ErrorCode = "INTERNAL"): AgentryError {
    if (AgentryError.isInstance(value)) return value;
    const message = value instanceof Error ? value.message : String(value);
    const code = fallback === "INTERNAL" && isTransientRedisError(value) ? "REDIS_UNAVAILABLE" : fallback;
    return new AgentryError(code, message, { cause: value });
  }
}

/**
 * Redis replies that say "not now" rather than "never": the server lost its script cache
 * (`NOSCRIPT`), is loading its data after a restart (`LOADING`), runs a long script (`BUSY`), is
 * out of memory (`OOM`), cannot write its snapshot or append-only file (`MISCONF`: a full or
 * failed disk), has too few replicas in sync to take writes (`NOREPLICAS`, with
 * `min-replicas-to-write`), is a replica or in a failover (`READONLY`, `MASTERDOWN`), or its cluster
 * is resharding or down (`TRYAGAIN`, `CLUSTERDOWN`); a transaction discarded (`EXECABORT`) for
 * such replies only; a client whose connection closed (before or after it sent the command) or ran
 * out of retries; and a Cluster client that ran out of redirections (a master failing over) or
 * reached no node. A task attempt that meets one is retried from its checkpoint, not failed.
 */
export function isTransientRedisError(value: unknown): boolean {
  if (!(value instanceof Error)) return false;
  if (value.name === "MaxRetriesPerRequestError" || value.message === "Connection is closed.") return true;
  // Sent, but the connection closed before the reply: the attempt goes on from its checkpoint,
  // whose writes are fenced and counted once, so whether it ran does not matter.
  if (value.name === "AbortError" && value.message.startsWith("Command aborted")) return true;
  // A Redis Cluster client that followed MOVED or reconnected as often as it may while the
  // cluster fails a master over, or that reached none of its nodes.
  if (value.message.startsWith("Too many Cluster redirections") || value.name === "ClusterAllFailedError")
    return true;
  if (value.name !== "ReplyError") return false;
  // A transaction whose commands were refused as they were queued (OOM is checked then) is
  // discarded whole; it passes with time when what refused them does (ioredis lists them).
  if (value.message.startsWith("EXECABORT")) {
    const previous = (value as { previousErrors?: unknown }).previousErrors;
    return Array.isArray(previous) && previous.length > 0 && previous.every(isTransientRedisError);
  }
  return TRANSIENT_REPLY.test(value.message);
}

/**
 * The server does not know the script an EVALSHA named (its cache was flushed, or it restarted
 * behind a proxy that kept the connection). Outside MULTI the client resends it as EVAL; inside
 * MULTI the caller loads the script and retries.
 */
export function isNoScriptError(value: unknown): boolean {
  return value instanceof Error && value.message.startsWith("NOSCRIPT");
}

const TRANSIENT_REPLY =
  /^(NOSCRIPT|LOADING|BUSY|OOM|MISCONF|NOREPLICAS|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/;

/** Type guard for a specific code. */
export function isAgentryError(value: unknown, code?: ErrorCode): value is AgentryError {
  return AgentryError.isInstance(value) && (code === undefined || value.code === code);
}
