import type { TelemetryHooks } from "../telemetry/hook-types.js";
import type { PricingFn } from "../telemetry/tracing-hooks.js";
import type { AgentryMetrics } from "./metrics.js";

/** The hooks {@link createMetricsHooks} returns (a subset of `AgentHooks` of `@agentry/agent`). */
export type MetricsHooks = Pick<TelemetryHooks, "afterModelCall" | "onModelCallError" | "afterToolCall">;

/** Options for {@link createMetricsHooks}. */
export interface MetricsHooksOptions {
  /** Prices each call in micro-USD, added in USD to `agentry_cost_usd_total`. A pricing throw skips the cost, never fails the run. */
  pricing?: PricingFn;
  /** Model label when a request names none. @defaultValue the response's model, else `unknown` */
  defaultModel?: string;
}

/**
 * Agent hooks that count into {@link AgentryMetrics}: model calls (count, duration, tokens by kind,
 * cost) per tenant and model, and tool calls by tool and decision. Suspended tool calls reach no
 * `afterToolCall`; the worker counts them with `metrics.recordToolCall(tool, "suspend")`.
 * The hooks never throw.
 */
export function createMetricsHooks(metrics: AgentryMetrics, options: MetricsHooksOptions = {}): MetricsHooks {
  return {
    async afterModelCall({ run, request, response, durationMs }) {
      const model = request.model ?? options.defaultModel ?? response.model;
      const tenant = run.tenant;
      const usage = response.usage;
      metrics.modelCalls.inc({ model, outcome: "ok" });
      metrics.modelCallDuration.observe({ model }, durationMs / 1000);
      metrics.tokens.inc({ tenant, kind: "input" }, usage.input);
      metrics.tokens.inc({ tenant, kind: "output" }, usage.output);
      metrics.tokens.inc({ tenant, kind: "cache_creation" }, usage.cacheCreationInput);
      metrics.tokens.inc({ tenant, kind: "cache_read" }, usage.cacheReadInput);
      if (options.pricing) {
        try {
          const cost = options.pricing(model, usage);
          if (Number.isFinite(cost) && cost >= 0) metrics.recordCost(tenant, cost);
        } catch {
          // An unpriced model must not fail the task; the budget ledger is the source of truth for cost.
        }
      }
    },
    async onModelCallError({ request, sent }) {
      if (!sent) return;
      metrics.modelCalls.inc({ model: request.model ?? options.defaultModel ?? "unknown", outcome: "error" });
    },
    async afterToolCall({ call, decision }) {
      metrics.recordToolCall(call.name, decision.type);
    },
  };
}
