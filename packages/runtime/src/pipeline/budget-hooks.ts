import {
  AgentryError,
  isAgentryError,
  tenantOwnedId,
  tenantScope,
  type AuditDataMap,
  type AuditSink,
} from "@agentry/core";
import type { AgentHooks, RunContext } from "@agentry/agent";
import type { ModelRequest, TokenCountRequest, Usage } from "@agentry/llm";
import type { CallLedger } from "../budget/allowance.js";
import { budgetError } from "../budget/budget-error.js";
import type { BudgetScope } from "../budget/scope.js";
import { reserveModelCall, type InputSource } from "./reserve-call.js";

/** How the budget hooks price a call (from @agentry/llm's pricing and estimate). */
export interface CallPricing {
  /** Cheap input token estimate of a request (meant to be above the provider's count, not guaranteed). */
  estimateInputTokens(request: ModelRequest): number;
  /**
   * The provider's exact prompt count of a request (`LanguageModel.countInputTokens`), asked for
   * only when a scope is close to its limit (see `estimateMargin`). Must throw, not guess, when it
   * cannot count: the call then fails before anything is reserved. @defaultValue none: the
   * estimate is reserved as is
   */
  countInputTokens?: (request: TokenCountRequest) => Promise<number>;
  /** Worst-case cost in micro-USD of `inputTokens` in and `maxTokens` out. */
  maxCostMicroUsd(model: string, inputTokens: number, maxTokens: number): number;
  /** Real cost in micro-USD of a call's usage (cache writes and reads at their own rates). */
  costMicroUsd(model: string, usage: Usage): number;
}

/** Options for {@link createBudgetHooks}. */
export interface BudgetHooksOptions {
  ledger: CallLedger;
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
  /**
   * How far the input estimate is trusted when `pricing.countInputTokens` is set. A call first
   * tries to reserve `ceil(estimate × estimateMargin) + maxTokens`; when some scope has no room
   * for that, the prompt is counted exactly and `count + maxTokens` is reserved instead (see
   * `reserveModelCall`). Far from every limit no count is made. At least 1.
   * @defaultValue 2
   */
  estimateMargin?: number;
  /** Count every call's prompt exactly, however far from a limit (one extra provider request per call). @defaultValue false */
  alwaysCount?: boolean;
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
  /**
   * How long closing a reservation (settle, release) is tried again while Redis refuses it for a
   * while (`REDIS_UNAVAILABLE`: out of memory, loading, a failover). Given up, the reservation is
   * reaped at its reserved amount (never under-counted). @defaultValue 120_000
   */
  closeRetryMs?: number;
}

/**
 * Runs `close` (a settle or a release: both idempotent) again while it fails with
 * `REDIS_UNAVAILABLE`, backing off from 50 ms to 2 s, for at most `forMs`. What the provider
 * billed is known here and nowhere else: a close lost to a passing refusal would leave the
 * reservation to the reaper, which charges its reserved amount instead.
 */
async function closeDurably<T>(close: () => Promise<T>, forMs: number): Promise<T> {
  const deadline = Date.now() + forMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await close();
    } catch (err) {
      if (AgentryError.from(err).code !== "REDIS_UNAVAILABLE" || Date.now() + delay > deadline) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * Settles a reservation the hooks made for this call. Not found means Redis no longer has it: a
 * failover to a replica that never got the reserve, or data lost. The call's usage then cannot be
 * charged to it; the attempt stops retryable (`REDIS_UNAVAILABLE`), as for Redis going away, and
 * resumes from its checkpoint, rather than failing the task.
 */
async function settleOwn(
  ledger: CallLedger,
  reservationId: string,
  amount: { tokens: number; costMicroUsd: number },
  forMs: number,
): Promise<Awaited<ReturnType<CallLedger["settle"]>>> {
  try {
    return await closeDurably(() => ledger.settle(reservationId, amount), forMs);
  } catch (err) {
    if (!isAgentryError(err, "NOT_FOUND")) throw err;
    throw new AgentryError(
      "REDIS_UNAVAILABLE",
      `Budget reservation ${reservationId} is gone from Redis (lost in a failover?): its call is not charged, and the attempt is retried`,
      { retryable: true, cause: err, details: { reservationId } },
    );
  }
}

/** Every scope a run's usage counts against; its user and session are its tenant's (`tenant:<t>:user:<u>`). */
export function defaultScopes(run: RunContext): BudgetScope[] {
  return [
    "global",
    tenantScope(run.tenant),
    tenantOwnedId(run.tenant, "user", run.userId),
    tenantOwnedId(run.tenant, "session", run.sessionId),
  ];
}

/**
 * Budget hooks for the agent loop: reserve the worst case before every model call (all scopes
 * or none), settle with the real usage after it, release when the provider billed nothing.
 * `BUDGET_EXCEEDED` stops the run before any provider call; `BUDGET_CONTENDED` (only other
 * tasks' in-flight reservations are in the way) is retryable. Each settled call's cost is
 * returned as its charge, so the run's result carries the task's cost.
 */
export function createBudgetHooks(options: BudgetHooksOptions): AgentHooks {
  const { ledger, pricing } = options;
  const scopesFor = options.scopesFor ?? defaultScopes;
  const floor = options.minOutputTokens ?? 256;
  const estimateMargin = options.estimateMargin ?? 2;
  if (!Number.isFinite(estimateMargin) || estimateMargin < 1) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `estimateMargin must be a finite number of at least 1, got ${estimateMargin}`,
    );
  }
  const open = new Map<
    string,
    {
      reservationId: string;
      model: string;
      amount: { tokens: number; costMicroUsd: number };
      inputTokens: number;
      inputSource: InputSource;
      renew: NodeJS.Timeout;
    }
  >();
  const leaseMs = options.leaseMs ?? 120_000;
  const closeRetryMs = options.closeRetryMs ?? 120_000;
  // While this process is alive the call is in flight: keep its reservation's lease from running
  // out under a slow call. Only a dead worker's reservation is reaped (at its reserved amount).
  const keepLeased = (reservationId: string) => {
    const until = Date.now() + (options.maxCallMs ?? 900_000);
    const timer = setInterval(
      () => {
        if (Date.now() > until) return clearInterval(timer);
        void ledger.extendLease(reservationId, leaseMs).catch(() => undefined);
      },
      Math.max(1_000, Math.floor(leaseMs / 3)),
    );
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
  // One attempt's call: an attempt that lost its lock may still have its call in flight when the
  // next attempt of the task makes the same step's call in this process, and each must settle
  // its own reservation (and stop renewing it).
  const keyOf = (run: RunContext, step: number) => `${run.taskId}#${run.fence?.token ?? ""}#${step}`;
  const audit = (run: RunContext, data: AuditDataMap["budget"]) =>
    options.audit?.append({
      type: "budget",
      taskId: run.taskId,
      sessionId: run.sessionId,
      userId: run.userId,
      tenant: run.tenant,
      data,
    });

  return {
    async beforeModelCall({ run, step, request }) {
      const model = request.model ?? options.defaultModel;
      const scopes = scopesFor(run);
      const result = await reserveModelCall({
        ledger,
        taskId: run.taskId,
        scopes,
        request: { ...request, model },
        leaseMs,
        minOutputTokens: floor,
        estimateMargin,
        alwaysCount: options.alwaysCount ?? false,
        estimateInputTokens: (r) => pricing.estimateInputTokens(r),
        countInputTokens: pricing.countInputTokens,
        maxCostMicroUsd: (m, i, o) => pricing.maxCostMicroUsd(m, i, o),
      });
      const { maxTokens, inputTokens, inputSource } = result;
      if (!result.ok) {
        const err = budgetError(result);
        await audit(run, {
          event: result.reason === "exceeded" ? "refused" : "contended",
          step,
          scope: result.scope,
          requested: result.requested,
        });
        throw err;
      }
      // A hook called twice for one call (never by the loop) must not orphan a renewal.
      take(keyOf(run, step));
      open.set(keyOf(run, step), {
        reservationId: result.reservation.id,
        model,
        amount: result.reservation.amount,
        inputTokens,
        inputSource,
        renew: keepLeased(result.reservation.id),
      });
      await audit(run, {
        event: "reserved",
        step,
        reservationId: result.reservation.id,
        amount: result.reservation.amount,
        input: { tokens: inputTokens, source: inputSource },
        clampedMaxTokens: maxTokens !== request.maxTokens ? maxTokens : undefined,
      });
      return maxTokens !== request.maxTokens ? { maxTokens } : undefined;
    },

    async afterModelCall({ run, step, response }) {
      const entry = take(keyOf(run, step));
      if (!entry) return;
      const model = response.model || entry.model;
      const cost = pricing.costMicroUsd(model, response.usage);
      const tokens =
        response.usage.input +
        response.usage.output +
        response.usage.cacheCreationInput +
        response.usage.cacheReadInput;
      const settled = await settleOwn(
        ledger,
        entry.reservationId,
        { tokens, costMicroUsd: cost },
        closeRetryMs,
      );
      // The provider counted more prompt than was reserved for: only possible on the estimate path
      // (the provider outran estimateMargin); say so, as it is the one way a limit can be crossed.
      const prompt = response.usage.input + response.usage.cacheCreationInput + response.usage.cacheReadInput;
      const undershoot =
        prompt > entry.inputTokens
          ? { inputUndershoot: { reserved: entry.inputTokens, billed: prompt, source: entry.inputSource } }
          : {};
      options.onSettled?.(run, model, response.usage, cost);
      await audit(run, {
        event: "settled",
        step,
        reservationId: entry.reservationId,
        tokens,
        costMicroUsd: cost,
        overrun: settled.overrun,
        ...undershoot,
      });
      return { costMicroUsd: cost };
    },

    async onModelCallError({ run, step, error, sent }) {
      const entry = take(keyOf(run, step));
      if (!entry) return;
      // Not sent (a hook after this one, or this one's own audit of the reservation, threw): nothing billed.
      if (!sent || providerBilledNothing(error)) {
        await closeDurably(() => ledger.release(entry.reservationId), closeRetryMs);
        await audit(run, { event: "released", step, reservationId: entry.reservationId });
        return;
      }
      // The provider may have done (and billed) the work: never under-count.
      await settleOwn(ledger, entry.reservationId, entry.amount, closeRetryMs);
      await audit(run, {
        event: "settled-at-reserved",
        step,
        reservationId: entry.reservationId,
        amount: entry.amount,
      });
      return { costMicroUsd: entry.amount.costMicroUsd };
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
