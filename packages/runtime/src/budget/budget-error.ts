import { AgentryError } from "@agentry/core";
import type { BudgetRefusal, ReserveResult } from "./types.js";

type Refused = Extract<ReserveResult, { ok: false }>;

const fmt = (n: number) => n.toLocaleString("en-US");
const usd = (micro: number) => `$${(micro / 1_000_000).toFixed(6).replace(/0{1,4}$/, "")}`;

function figures(r: BudgetRefusal, includeReserved: boolean): string {
  const tokens = r.dimension === "tokens";
  const show = tokens ? fmt : usd;
  const pick = (a: { tokens: number; costMicroUsd: number }) => (tokens ? a.tokens : a.costMicroUsd);
  const max = tokens ? r.limit.maxTokens : r.limit.maxCostMicroUsd;
  const parts = [`${show(pick(r.used))} used`];
  if (includeReserved) parts.push(`${show(pick(r.reserved))} reserved by calls in flight`);
  parts.push(`${show(pick(r.requested))} requested`);
  const period = r.period === "none" ? "" : ` (period ${r.period})`;
  const unit = tokens ? " tokens" : "";
  return `${parts.join(" + ")} would exceed ${show(max ?? 0)}${unit}${period}`;
}

/**
 * Turns a refused reservation into the error a task fails (or waits) with:
 * - `exceeded` → `BUDGET_EXCEEDED` (not retryable), e.g.
 *   "Budget exceeded for tenant:acme: 9,500 used + 1,200 requested would exceed 10,000 tokens";
 * - `contended` → `BUDGET_CONTENDED` (retryable, with `retryAfterMs`): it fits the limit
 *   once reservations in flight settle.
 * `details` carries the scope and every figure.
 */
export function budgetError(result: Refused): AgentryError {
  const details = {
    scope: result.scope,
    dimension: result.dimension,
    period: result.period,
    limit: result.limit,
    used: result.used,
    reserved: result.reserved,
    requested: result.requested,
  };
  if (result.reason === "exceeded") {
    return new AgentryError(
      "BUDGET_EXCEEDED",
      `Budget exceeded for ${result.scope}: ${figures(result, false)}`,
      {
        details,
      },
    );
  }
  return new AgentryError(
    "BUDGET_CONTENDED",
    `Budget busy for ${result.scope}: ${figures(result, true)}; retry once they settle`,
    { retryAfterMs: result.retryAfterMs, details },
  );
}
