import { AgentryError } from "@agentry/core";
import type { AgentHooks, RunContext } from "@agentry/agent";
import type { ModelRequest, Usage } from "@agentry/llm";
import type { BudgetLedger } from "../budget/ledger.js";
import { budgetError } from "../budget/budget-error.js";
import type { BudgetScope } from "../budget/scope.js";
import type { AuditSink } from "./audit-sink.js";

/** How the budget hooks price a call (from @agentry/llm's pricing and estimate). */
export interface CallPricing {
  /** Conservative input token estimate of a request (never below what the provider reports). */
  estimateInputTokens(request: ModelRequest): number;
  /** Worst-case cost in micro-USD of `inputTokens` in and `maxTokens` out. */
  maxCostMicroUsd(model: string, inputTokens: number, maxTokens: number): number;
  /** Real cost in micro-USD of a call's usage (cache writes and reads at their own rates). */
  costMicroUsd(model: string, usage: Usage): number;
}

/** Options for {@link createBudgetHooks}. */
export interface BudgetHooksOptions {
  ledger: BudgetLedger;
  pricing: CallPricing;
  /** The model used when a request names none. */
  defaultModel: string;
  /** @defaultValue global, tenant, user and session of the run */
  scopesFor?: (run: RunContext) => BudgetScope[];
  /**
   * When the budget cannot pay for `max_tokens` but can pay for at least this many output
   * tokens, the call goes ahead with `max_tokens` clamped. @defaultValue 256
   */
  minOutputTokens?: number;
  /** Reservation lease; a dead worker's reservation is settled at its reserved amount after it. @defaultValue 120_000 */
  leaseMs?: number;
  audit?: AuditSink;
  /**
   * Longest a model call may keep its reservation's lease alive; after it the lease lapses and
   * the reaper settles the reservation at its reserved amount. @defaultValue 900_000 (15 min)
   */
  maxCallMs?: number;
  /** Called after each settled call with its real cost, for metrics. */
  onSettled?: (run: RunContext, model: string, usage: Usage, costMicroUsd: number) => void;
}

/** Every scope a run's usage counts against. */
export function defaultScopes(run: RunContext): BudgetScope[] {
  return ["global", `tenant:${run.tenant}`, `user:${run.userId}`, `session:${run.sessionId}`];
}

/**
 * Budget hooks for the agent loop: reserve the worst case before every model call (all scopes
 * or none), settle with the real usage after it, release when the provider billed nothing.
 * `BUDGET_EXCEEDED` stops the run before any provider call; `BUDGET_CONTENDED` (only other
 * tasks' in-flight reservations are in the way) is retryable.
 */
export function createBudgetHooks(options: BudgetHooksOptions): AgentHooks & {
  /** Cost charged for a task by this process since the last {@link forget}. */
  costOf(taskId: string): number;
  /** Drops a task's running total (call when an attempt ends). */
  forget(taskId: string): void;
} {
  const { ledger, pricing } = options;
  const scopesFor = options.scopesFor ?? defaultScopes;
  const floor = options.minOutputTokens ?? 256;
  const open = new Map<string, { reservationId: string; model: string; amount: { tokens: number; costMicroUsd: number }; renew: NodeJS.Timeout }>();
  const leaseMs = options.leaseMs ?? 120_000;
  // While this process is alive the call is in flight: keep its reservation's lease from running
  // out under a slow call. Only a dead worker's reservation is reaped (at its reserved amount).
  const keepLeased = (reservationId: string) => {
    const until = Date.now() + (options.maxCallMs ?? 900_000);
    const timer = setInterval(() => {
      if (Date.now() > until) return clearInterval(timer);
      void ledger.extendLease(reservationId, leaseMs).catch(() => undefined);
    }, Math.max(1_000, Math.floor(leaseMs / 3)));
    timer.unref();
    return timer;
  };
  const take = (key: string) => {
    const entry = open.get(key);
    if (entry) {
      clearInterval(entry.renew);
      open.delete(key);
    }
    return entry;
  };
  const spent = new Map<string, number>();
  const keyOf = (run: RunContext, step: number) => `${run.taskId}#${step}`;
  const audit = (run: RunContext, data: Record<string, unknown>) =>
    options.audit?.append({ type: "budget", taskId: run.taskId, sessionId: run.sessionId, userId: run.userId, tenant: run.tenant, data });

  return {
    costOf: (taskId) => spent.get(taskId) ?? 0,
    forget: (taskId) => void spent.delete(taskId),

    async beforeModelCall({ run, step, request }) {
      const model = request.model ?? options.defaultModel;
      const scopes = scopesFor(run);
      const input = pricing.estimateInputTokens(request);
      const amountFor = (maxTokens: number) => ({ tokens: input + maxTokens, costMicroUsd: pricing.maxCostMicroUsd(model, input, maxTokens) });
      let maxTokens = request.maxTokens;
      let result = await ledger.reserve({ taskId: run.taskId, scopes, amount: amountFor(maxTokens), leaseMs });
      if (!result.ok && result.reason === "exceeded") {
        const clamped = await affordableMaxTokens(ledger, scopes, maxTokens, floor, (m) => amountFor(m));
        if (clamped !== null) {
          maxTokens = clamped;
          result = await ledger.reserve({ taskId: run.taskId, scopes, amount: amountFor(maxTokens), leaseMs });
        }
      }
      if (!result.ok) {
        const err = budgetError(result);
        await audit(run, { event: result.reason === "exceeded" ? "refused" : "contended", step, scope: result.scope, requested: result.requested });
        throw err;
      }
      open.set(keyOf(run, step), { reservationId: result.reservation.id, model, amount: result.reservation.amount, renew: keepLeased(result.reservation.id) });
      await audit(run, { event: "reserved", step, reservationId: result.reservation.id, amount: result.reservation.amount, clampedMaxTokens: maxTokens !== request.maxTokens ? maxTokens : undefined });
      return maxTokens !== request.maxTokens ? { maxTokens } : undefined;
    },

    async afterModelCall({ run, step, response }) {
      const entry = take(keyOf(run, step));
      if (!entry) return;
      const model = response.model || entry.model;
      const cost = pricing.costMicroUsd(model, response.usage);
      const tokens = response.usage.input + response.usage.output + response.usage.cacheCreationInput + response.usage.cacheReadInput;
      const settled = await ledger.settle(entry.reservationId, { tokens, costMicroUsd: cost });
      spent.set(run.taskId, (spent.get(run.taskId) ?? 0) + cost);
      options.onSettled?.(run, model, response.usage, cost);
      await audit(run, { event: "settled", step, reservationId: entry.reservationId, tokens, costMicroUsd: cost, overrun: settled.overrun });
    },

    async onModelCallError({ run, step, error }) {
      const entry = take(keyOf(run, step));
      if (!entry) return;
      if (providerBilledNothing(error)) {
        await ledger.release(entry.reservationId);
        await audit(run, { event: "released", step, reservationId: entry.reservationId });
      } else {
        // The provider may have done (and billed) the work: never under-count.
        await ledger.settle(entry.reservationId, entry.amount);
        spent.set(run.taskId, (spent.get(run.taskId) ?? 0) + entry.amount.costMicroUsd);
        await audit(run, { event: "settled-at-reserved", step, reservationId: entry.reservationId, amount: entry.amount });
      }
    },
  };
}

/** Errors after which the provider did no billable work: refused, rate limited, overloaded, bad request. */
function providerBilledNothing(error: unknown): boolean {
  if (!AgentryError.isInstance(error)) return false;
  switch (error.code) {
    case "PROVIDER_RATE_LIMITED":
    case "PROVIDER_OVERLOADED":
    case "PROVIDER_BAD_REQUEST":
    case "PROVIDER_AUTH":
    case "UNKNOWN_MODEL":
      return true;
    default:
      return false;
  }
}

/** The largest max_tokens in [floor, wanted) the scopes can pay for now, or null. */
async function affordableMaxTokens(
  ledger: BudgetLedger,
  scopes: BudgetScope[],
  wanted: number,
  floor: number,
  amountFor: (maxTokens: number) => { tokens: number; costMicroUsd: number },
): Promise<number | null> {
  const available = await ledger.available(scopes);
  const fits = (m: number) => {
    const a = amountFor(m);
    return (available.tokens === null || a.tokens <= available.tokens) && (available.costMicroUsd === null || a.costMicroUsd <= available.costMicroUsd);
  };
  if (!fits(Math.min(floor, wanted))) return null;
  let lo = Math.min(floor, wanted);
  let hi = wanted - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
