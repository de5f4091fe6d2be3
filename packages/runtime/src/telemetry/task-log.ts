import { isSpanContextValid, trace } from "@opentelemetry/api";
import {
  AgentryError,
  createLogger,
  systemClock,
  type Clock,
  type CreateLoggerOptions,
  type Logger,
} from "@agentry/core";

/** Fields {@link traceLogMixin} adds to a log line. */
export interface TraceLogFields {
  trace_id?: string;
  span_id?: string;
  trace_flags?: string;
}

/**
 * A pino `mixin` that adds `trace_id`, `span_id` and `trace_flags` of the active span to every line
 * (nothing when no valid span is active), so a log line can be found from a trace and back.
 */
export function traceLogMixin(): () => TraceLogFields {
  return () => {
    const span = trace.getActiveSpan();
    if (!span) return {};
    const sc = span.spanContext();
    if (!isSpanContextValid(sc)) return {};
    return {
      trace_id: sc.traceId,
      span_id: sc.spanId,
      trace_flags: sc.traceFlags.toString(16).padStart(2, "0"),
    };
  };
}

/**
 * `createLogger` of `@agentry/core` (JSON lines, secrets redacted by `DEFAULT_REDACT_PATHS` plus
 * `redact`) with {@link traceLogMixin} installed. A `pinoOptions.mixin` of the caller still runs;
 * its fields are merged after the trace fields.
 */
export function createTaskLogger(options: CreateLoggerOptions): Logger {
  const traceFields = traceLogMixin();
  const userMixin = options.pinoOptions?.mixin;
  return createLogger({
    ...options,
    pinoOptions: {
      ...options.pinoOptions,
      mixin: (mergeObject, level, logger) => ({
        ...traceFields(),
        ...(userMixin ? userMixin(mergeObject, level, logger) : {}),
      }),
    },
  });
}

/** Identity of a task for its log lines. */
export interface TaskLogIdentity {
  taskId: string;
  tenant: string;
  userId?: string;
  sessionId?: string;
  /** BullMQ attempt number (1-based). */
  attempt?: number;
  /** Job name in the task catalog. */
  name?: string;
}

/** The lifecycle log of one task execution, from {@link startTaskLog}. */
export interface TaskLog {
  /** A child logger bound to the task's identity; use it for everything the task logs. */
  readonly logger: Logger;
  /** Milliseconds since the task started. */
  elapsedMs(): number;
  /** Logs `task completed` at info with `durationMs`. */
  completed(fields?: Record<string, unknown>): void;
  /** Logs `task failed` at error (warn when it will be retried) with `durationMs` and the error. */
  failed(error: unknown, fields?: Record<string, unknown> & { willRetry?: boolean }): void;
  /** Logs `task suspended` at info (waiting for an approval, rate limited, ...) with `durationMs`. */
  suspended(reason: string, fields?: Record<string, unknown>): void;
}

/**
 * Logs `task started` and returns the handle that logs how it ended, with its duration.
 * `_internal.clock` is for tests.
 */
export function startTaskLog(
  logger: Logger,
  task: TaskLogIdentity,
  _internal: { clock?: Clock } = {},
): TaskLog {
  const clock = _internal.clock ?? systemClock;
  const startedAt = clock.now();
  const child = logger.child(definedOnly({ ...task }));
  const elapsedMs = () => clock.now() - startedAt;
  child.info("task started");
  return {
    logger: child,
    elapsedMs,
    completed(fields = {}) {
      child.info({ ...fields, durationMs: elapsedMs() }, "task completed");
    },
    failed(error, fields = {}) {
      const { willRetry, ...rest } = fields;
      const line = {
        ...rest,
        durationMs: elapsedMs(),
        ...describeError(error),
        ...(willRetry !== undefined ? { willRetry } : {}),
      };
      if (willRetry) child.warn(line, "task failed");
      else child.error(line, "task failed");
    },
    suspended(reason, fields = {}) {
      child.info({ ...fields, reason, durationMs: elapsedMs() }, "task suspended");
    },
  };
}

function describeError(error: unknown): Record<string, unknown> {
  if (AgentryError.isInstance(error)) {
    return {
      errorCode: error.code,
      errorCategory: error.category,
      retryable: error.retryable,
      err: error,
    };
  }
  if (error instanceof Error) return { err: error };
  return { err: { message: String(error) } };
}

function definedOnly(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}
