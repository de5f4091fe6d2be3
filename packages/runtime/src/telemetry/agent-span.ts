import {
  context,
  createContextKey,
  isSpanContextValid,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type Tracer,
} from "@opentelemetry/api";
import { AgentryError } from "@agentry/core";
import { DelayedError, RateLimitError, WaitingChildrenError, WaitingError } from "bullmq";
import type { Usage } from "@agentry/llm";
import { AgentryAttr, GenAIAttr, GenAIOperation, usageAttributes } from "./attributes.js";
import type { RunContext } from "./hook-types.js";
import { AGENTRY_TRACER_NAME } from "./start-telemetry.js";

/** A run as {@link withAgentSpan} sees it. */
export interface AgentRun extends RunContext {
  /** `gen_ai.agent.name` and the span name suffix. @defaultValue `agentry` */
  agentName?: string;
  /** `gen_ai.provider.name`, e.g. `anthropic` (the model's `provider`). @defaultValue not set */
  providerName?: string;
  /** `gen_ai.request.model`: the model the task asks for (its own, else the worker's default). @defaultValue not set */
  requestModel?: string;
}

/** Options for {@link withAgentSpan}. */
export interface AgentSpanOptions {
  /** @defaultValue the global provider's `agentry` tracer */
  tracer?: Tracer;
  /**
   * Links to other spans, e.g. `linkFrom(checkpoint.traceParent)` so a task resumed after an
   * approval links to the trace of its first attempt. `undefined` entries are skipped, so
   * `linkFrom`'s result can be passed as is.
   */
  links?: ReadonlyArray<Link | undefined>;
  /** Extra attributes on the `invoke_agent` span. */
  attributes?: Attributes;
}

/**
 * Runs `fn` inside an `invoke_agent {agentName}` span (GenAI conventions: `gen_ai.operation.name`,
 * `gen_ai.agent.name`, `gen_ai.conversation.id` = session id, and `gen_ai.provider.name` and
 * `gen_ai.request.model` when the run names them) carrying `agentry.tenant`,
 * `agentry.user_id`, `agentry.session_id` and `agentry.task_id`. The span is the active span while
 * `fn` runs, so the tracing hooks' `chat` and `execute_tool` spans and every log line nest under it.
 *
 * A throw marks the span as an error (`error.type` = the `AgentryError` code or the error's name)
 * and is rethrown. BullMQ control-flow throws (`DelayedError`, `RateLimitError`, `WaitingError`,
 * `WaitingChildrenError`) are not errors: they set `agentry.control_flow` instead.
 * Child spans the hooks opened but never closed are ended here: a tool call still open when the
 * run returns was suspended (`agentry.tool.decision` = `suspend`); after a failure it is an error.
 */
export async function withAgentSpan<T>(
  run: AgentRun,
  fn: (span: Span) => Promise<T>,
  options: AgentSpanOptions = {},
): Promise<T> {
  const tracer = options.tracer ?? trace.getTracer(AGENTRY_TRACER_NAME);
  const agentName = run.agentName ?? "agentry";
  const links = (options.links ?? []).filter((l): l is Link => l !== undefined);
  const span = tracer.startSpan(`${GenAIOperation.invokeAgent} ${agentName}`, {
    kind: SpanKind.INTERNAL,
    links,
    attributes: {
      [GenAIAttr.operationName]: GenAIOperation.invokeAgent,
      [GenAIAttr.agentName]: agentName,
      [GenAIAttr.conversationId]: run.sessionId,
      [AgentryAttr.tenant]: run.tenant,
      [AgentryAttr.userId]: run.userId,
      [AgentryAttr.sessionId]: run.sessionId,
      [AgentryAttr.taskId]: run.taskId,
      ...(run.providerName !== undefined ? { [GenAIAttr.providerName]: run.providerName } : {}),
      ...(run.requestModel !== undefined ? { [GenAIAttr.requestModel]: run.requestModel } : {}),
      ...options.attributes,
    },
  });
  const scope = new RunScope();
  const ctx = trace.setSpan(context.active(), span).setValue(RUN_SCOPE_KEY, scope);
  try {
    const result = await context.with(ctx, () => fn(span));
    scope.closeAll({ failed: false });
    return result;
  } catch (error) {
    if (isControlFlow(error)) {
      span.setAttribute(AgentryAttr.controlFlow, error.name);
      scope.closeAll({ failed: false });
    } else {
      markError(span, error);
      scope.closeAll({ failed: true, error });
    }
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Sets a task's usage totals on its `invoke_agent` span: the `gen_ai.usage.*` token counts summed
 * over every model call of the task (all attempts; input counts cache writes and reads too, as
 * on `chat` spans) and, when given, `agentry.cost_micro_usd`.
 */
export function setAgentUsage(span: Span, usage: Usage, costMicroUsd?: number): void {
  span.setAttributes(usageAttributes(usage));
  if (costMicroUsd !== undefined) span.setAttribute(AgentryAttr.costMicroUsd, costMicroUsd);
}

/**
 * The span context as a W3C `traceparent` string (`00-<trace id>-<span id>-<flags>`), to store in a
 * checkpoint and turn back into a link with {@link linkFrom}. `undefined` when the span is not
 * real (telemetry disabled).
 */
export function serializeSpanContext(span: Span | SpanContext): string | undefined {
  const sc = "spanContext" in span ? span.spanContext() : span;
  if (!isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * A span link to a context stored by {@link serializeSpanContext}, with `agentry.link.reason`.
 * `undefined` for a missing or malformed value: a bad trace string never fails a task.
 */
export function linkFrom(serialised: string | undefined, reason = "resumed"): Link | undefined {
  const match = serialised ? TRACEPARENT.exec(serialised.trim()) : null;
  if (!match) return undefined;
  const spanContext: SpanContext = {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: Number.parseInt(match[3]!, 16),
    isRemote: true,
  };
  if (!isSpanContextValid(spanContext)) return undefined;
  return { context: spanContext, attributes: { [AgentryAttr.linkReason]: reason } };
}

/** Sets error status, `error.type` and an exception event on a span. */
export function markError(span: Span, error: unknown): void {
  span.setAttribute(GenAIAttr.errorType, errorType(error));
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
}

/** `error.type`: the AgentryError code, else the error's name, else `_OTHER` (the conventions' fallback). */
export function errorType(error: unknown): string {
  if (AgentryError.isInstance(error)) return error.code;
  if (error instanceof Error && error.name) return error.name;
  return "_OTHER";
}

function isControlFlow(error: unknown): error is Error {
  return (
    error instanceof DelayedError ||
    error instanceof RateLimitError ||
    error instanceof WaitingError ||
    error instanceof WaitingChildrenError
  );
}

/** How a still-open child span is ended when its run ends. */
export interface ScopeExit {
  failed: boolean;
  error?: unknown;
}

/** Internal. Spans opened by hooks under one `invoke_agent` span and not yet closed. */
export class RunScope {
  private readonly open = new Set<(exit: ScopeExit) => void>();

  /** Registers a closer; returns a function that unregisters it (call it when the span ends normally). */
  add(close: (exit: ScopeExit) => void): () => void {
    this.open.add(close);
    return () => this.open.delete(close);
  }

  closeAll(exit: ScopeExit): void {
    const closers = [...this.open];
    this.open.clear();
    for (const close of closers) close(exit);
  }
}

const RUN_SCOPE_KEY = createContextKey("agentry.run-scope");

/** Internal. The run scope of the active `invoke_agent` span, if any. */
export function runScopeOf(ctx: Context = context.active()): RunScope | undefined {
  const value = ctx.getValue(RUN_SCOPE_KEY);
  return value instanceof RunScope ? value : undefined;
}
