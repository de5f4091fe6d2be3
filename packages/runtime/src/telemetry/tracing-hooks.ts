import {
  context,
  diag,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type Tracer,
} from "@opentelemetry/api";
import type { Usage } from "@agentry/llm";
import { markError, runScopeOf, type ScopeExit } from "./agent-span.js";
import { AgentryAttr, GenAIAttr, GenAIOperation, usageAttributes } from "./attributes.js";
import type { ModelCallInfo, TelemetryHooks, ToolCallInfo } from "./hook-types.js";
import { AGENTRY_TRACER_NAME } from "./start-telemetry.js";

/** Prices one call in integer micro-USD (e.g. from `@agentry/llm`'s pricing table). */
export type PricingFn = (model: string, usage: Usage) => number;

/** Options for {@link createTracingHooks}. */
export interface TracingHooksOptions {
  /** @defaultValue the global provider's `agentry` tracer */
  tracer?: Tracer;
  /** Sets `agentry.cost_micro_usd` on `chat` spans. A pricing throw is logged, never fails the run. */
  pricing?: PricingFn;
  /** `gen_ai.provider.name` and `gen_ai.system`. @defaultValue `anthropic` */
  provider?: string;
  /** Model named on spans when a request names none (the adapter's default model). */
  defaultModel?: string;
}

interface OpenSpan {
  span: Span;
  /** Removes the span from its run scope (it is being ended normally). */
  release(): void;
}

/**
 * Agent hooks that trace model and tool calls, for `composeHooks` of `@agentry/agent`:
 *
 * - `chat {model}` (kind CLIENT) from `beforeModelCall` to `afterModelCall` / `onModelCallError`,
 *   with `gen_ai.operation.name=chat`, provider, request model and `max_tokens` (after budget
 *   clamps), response id, model and finish reasons, token usage (`gen_ai.usage.input_tokens`
 *   counts cache reads and writes too, as the conventions ask; the cache parts are also given
 *   apart) and `agentry.cost_micro_usd` when `pricing` is given.
 * - `execute_tool {name}` (kind INTERNAL) from `beforeToolCall` to `afterToolCall`, with
 *   `gen_ai.tool.name`, `gen_ai.tool.call.id` and `agentry.tool.decision`.
 *
 * Spans are keyed by task id + step (model) and task id + tool call id (tools), so concurrent
 * calls never mix, and are parented under the active span (the `invoke_agent` span of
 * {@link withAgentSpan}). The hooks never throw: a telemetry failure must not fail a task.
 * `beforeToolCall` always answers `allow`. Tool code runs outside the hooks, so spans it opens
 * are siblings of `execute_tool`, not children.
 */
export function createTracingHooks(options: TracingHooksOptions = {}): TelemetryHooks {
  const tracer = options.tracer ?? trace.getTracer(AGENTRY_TRACER_NAME);
  const provider = options.provider ?? "anthropic";
  const modelSpans = new Map<string, OpenSpan>();
  const toolSpans = new Map<string, OpenSpan>();

  const modelOf = (info: ModelCallInfo) => info.request.model ?? options.defaultModel;

  function open(
    spans: Map<string, OpenSpan>,
    key: string,
    name: string,
    kind: SpanKind,
    attributes: Attributes,
    onRunEnd: (span: Span, exit: ScopeExit) => void,
    startTime?: number,
  ): OpenSpan {
    // A span left open under the same key belongs to an attempt that never finished.
    const stale = spans.get(key);
    if (stale) {
      stale.release();
      stale.span.setAttribute(AgentryAttr.unfinished, true);
      stale.span.end();
    }
    const parent = context.active();
    const span = tracer.startSpan(
      name,
      { kind, attributes, ...(startTime !== undefined ? { startTime } : {}) },
      parent,
    );
    const unregister =
      runScopeOf(parent)?.add((exit) => {
        spans.delete(key);
        onRunEnd(span, exit);
        span.end();
      }) ?? (() => undefined);
    const entry: OpenSpan = {
      span,
      release: () => {
        unregister();
        spans.delete(key);
      },
    };
    spans.set(key, entry);
    return entry;
  }

  function openModelSpan(info: ModelCallInfo, startTime?: number): OpenSpan {
    const model = modelOf(info);
    const attributes: Attributes = {
      [GenAIAttr.operationName]: GenAIOperation.chat,
      [GenAIAttr.providerName]: provider,
      [GenAIAttr.system]: provider,
      [GenAIAttr.requestMaxTokens]: info.request.maxTokens,
      [AgentryAttr.taskId]: info.run.taskId,
      [AgentryAttr.step]: info.step,
    };
    if (model !== undefined) attributes[GenAIAttr.requestModel] = model;
    if (info.request.temperature !== undefined)
      attributes[GenAIAttr.requestTemperature] = info.request.temperature;
    return open(
      modelSpans,
      modelKey(info),
      model ? `${GenAIOperation.chat} ${model}` : GenAIOperation.chat,
      SpanKind.CLIENT,
      attributes,
      (span, exit) => {
        span.setAttribute(AgentryAttr.unfinished, true);
        if (exit.failed) markError(span, exit.error);
      },
      startTime,
    );
  }

  function openToolSpan(info: ToolCallInfo, startTime?: number): OpenSpan {
    const attributes: Attributes = {
      [GenAIAttr.operationName]: GenAIOperation.executeTool,
      [GenAIAttr.toolName]: info.call.name,
      [GenAIAttr.toolCallId]: info.call.id,
      [GenAIAttr.toolType]: "function",
      [AgentryAttr.taskId]: info.run.taskId,
      [AgentryAttr.step]: info.step,
    };
    if (info.previousSuspension)
      attributes[AgentryAttr.toolPreviousSuspension] = info.previousSuspension.reason;
    return open(
      toolSpans,
      toolKey(info),
      `${GenAIOperation.executeTool} ${info.call.name}`,
      SpanKind.INTERNAL,
      attributes,
      (span, exit) => {
        if (exit.failed) {
          span.setAttribute(AgentryAttr.unfinished, true);
          markError(span, exit.error);
        } else {
          // afterToolCall is called for every call that got a result; the rest were suspended.
          span.setAttribute(AgentryAttr.toolDecision, "suspend");
        }
      },
      startTime,
    );
  }

  return {
    async beforeModelCall(info) {
      safely("beforeModelCall", () => {
        openModelSpan(info);
      });
    },

    async afterModelCall(info) {
      safely("afterModelCall", () => {
        const { span, release } =
          modelSpans.get(modelKey(info)) ?? openModelSpan(info, Date.now() - info.durationMs);
        release();
        const { response } = info;
        const usage = response.usage;
        if (modelOf(info) === undefined) {
          // The request named no model (the adapter chose): name the span after the one that answered.
          span.updateName(`${GenAIOperation.chat} ${response.model}`);
          span.setAttribute(GenAIAttr.requestModel, response.model);
        }
        span.setAttributes({
          // The request as sent, after any budget clamp made by other hooks.
          [GenAIAttr.requestMaxTokens]: info.request.maxTokens,
          [GenAIAttr.responseModel]: response.model,
          [GenAIAttr.responseId]: response.id,
          [GenAIAttr.responseFinishReasons]: [response.stopReason],
          ...usageAttributes(usage),
        });
        if (options.pricing) {
          const model = modelOf(info) ?? response.model;
          safely("pricing", () => {
            span.setAttribute(AgentryAttr.costMicroUsd, options.pricing!(model, usage));
          });
        }
        span.end();
      });
    },

    async onModelCallError(info) {
      safely("onModelCallError", () => {
        // A call stopped before it was sent has a span only when this hook's before ran.
        if (!info.sent && !modelSpans.has(modelKey(info))) return;
        const { span, release } = modelSpans.get(modelKey(info)) ?? openModelSpan(info);
        release();
        markError(span, info.error);
        span.end();
      });
    },

    async beforeToolCall(info) {
      safely("beforeToolCall", () => {
        openToolSpan(info);
      });
      return { type: "allow" };
    },

    async afterToolCall(info) {
      safely("afterToolCall", () => {
        const { span, release } =
          toolSpans.get(toolKey(info)) ?? openToolSpan(info, Date.now() - info.durationMs);
        release();
        const { decision } = info;
        span.setAttribute(AgentryAttr.toolDecision, decision.type);
        if (decision.type === "deny") {
          span.setAttribute(AgentryAttr.toolDenyReason, decision.reason);
          if (decision.policy !== undefined) span.setAttribute(AgentryAttr.toolDenyPolicy, decision.policy);
        }
        if (decision.type === "allow" && info.result.isError === true) {
          span.setAttribute(GenAIAttr.errorType, "tool_error");
          span.setStatus({ code: SpanStatusCode.ERROR, message: truncate(info.result.content, 200) });
        }
        span.end();
      });
    },
  };
}

function modelKey(info: ModelCallInfo): string {
  return `${info.run.taskId}#${info.step}`;
}

function toolKey(info: ToolCallInfo): string {
  return `${info.run.taskId}#${info.call.id}`;
}

function safely(where: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    diag.error(`agentry tracing hook ${where} failed`, error);
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}
