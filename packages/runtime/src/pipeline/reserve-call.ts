import { AgentryError } from "@agentry/core";
import type { ModelRequest, TokenCountRequest } from "@agentry/llm";
import type { CallLedger } from "../budget/allowance.js";
import type { BudgetScope } from "../budget/scope.js";
import type { BudgetAmount, ReserveResult } from "../budget/types.js";

/** Where the input figure of a reservation came from. */
export type InputSource = "estimate" | "count";

/** What {@link reserveModelCall} needs to price and count one call. */
export interface ReserveCallOptions {
  ledger: CallLedger;
  taskId: string;
  scopes: BudgetScope[];
  /** The request as the loop will send it, with the model resolved. */
  request: ModelRequest & { model: string };
  leaseMs: number;
  /** Smallest `max_tokens` a clamp may go down to. */
  minOutputTokens: number;
  /** See `BudgetHooksOptions.estimateMargin`. */
  estimateMargin: number;
  /** See `BudgetHooksOptions.alwaysCount`. */
  alwaysCount: boolean;
  estimateInputTokens(request: ModelRequest): number;
  countInputTokens?: ((request: TokenCountRequest) => Promise<number>) | undefined;
  maxCostMicroUsd(model: string, inputTokens: number, maxTokens: number): number;
}

/** The outcome of {@link reserveModelCall}: the ledger's answer plus the figures it was asked for. */
export type ReservedCall = ReserveResult & {
  /** `max_tokens` the reservation pays for (below the request's when clamped). */
  maxTokens: number;
  /** Input tokens the reservation holds on top of `maxTokens`. */
  inputTokens: number;
  inputSource: InputSource;
};

/**
 * Reserves one model call's worst case, counting its prompt exactly only when that matters.
 *
 * The rule ("close to a limit" is decided by the ledger, atomically):
 * 1. Without a counter the reservation is `estimate + maxTokens`, as the estimate is all there is.
 * 2. With one, the call first tries the cheap figure `ceil(estimate × estimateMargin) + maxTokens`
 *    (priced on that input). If every scope has room for it the call goes ahead with no count:
 *    far from every limit, and covered as long as the provider counts at most `estimateMargin`
 *    times the estimate (the estimate is itself 1.3–1.8× a tokenizer-like count on typical text).
 * 3. If some scope refuses that (exceeded or contended), the scope is close enough to its limit
 *    that the estimate's error matters: the prompt is counted by the provider and the call
 *    reserves `count + maxTokens`. Output cannot exceed `max_tokens`, so that is a true bound,
 *    whatever the tokenizer does with code or non-English text. If even that does not fit,
 *    `max_tokens` is clamped as before (down to `minOutputTokens`) on the exact input.
 * With `alwaysCount` step 2 is skipped. A failing count throws its (retryable) error before
 * anything is reserved: no guess, no model call.
 */
export async function reserveModelCall(options: ReserveCallOptions): Promise<ReservedCall> {
  const { ledger, request } = options;
  const estimate = options.estimateInputTokens(request);
  const reserve = async (inputTokens: number, inputSource: InputSource, maxTokens: number) => {
    const result = await ledger.reserve({
      taskId: options.taskId,
      scopes: options.scopes,
      amount: amountFor(options, inputTokens, maxTokens),
      leaseMs: options.leaseMs,
    });
    return { ...result, maxTokens, inputTokens, inputSource };
  };

  let input = estimate;
  let source: InputSource = "estimate";
  if (options.countInputTokens !== undefined) {
    if (!options.alwaysCount) {
      const cheap = await reserve(
        Math.ceil(estimate * options.estimateMargin),
        "estimate",
        request.maxTokens,
      );
      if (cheap.ok) return cheap;
    }
    input = await options.countInputTokens(request);
    if (!Number.isSafeInteger(input) || input < 0) {
      throw new AgentryError("PROVIDER_BAD_RESPONSE", `Token count is not a token count: ${String(input)}`, {
        retryable: true,
        details: { model: request.model },
      });
    }
    source = "count";
  }
  const first = await reserve(input, source, request.maxTokens);
  if (first.ok || first.reason !== "exceeded") return first;
  const clamped = await affordableMaxTokens(options, input, request.maxTokens);
  return clamped === null ? first : reserve(input, source, clamped);
}

function amountFor(options: ReserveCallOptions, inputTokens: number, maxTokens: number): BudgetAmount {
  return {
    tokens: inputTokens + maxTokens,
    costMicroUsd: options.maxCostMicroUsd(options.request.model, inputTokens, maxTokens),
  };
}

/** The largest max_tokens in [floor, wanted) the scopes can pay for now, or null. */
async function affordableMaxTokens(
  options: ReserveCallOptions,
  inputTokens: number,
  wanted: number,
): Promise<number | null> {
  const available = await options.ledger.available(options.scopes);
  const fits = (m: number) => {
    const a = amountFor(options, inputTokens, m);
    return (
      (available.tokens === null || a.tokens <= available.tokens) &&
      (available.costMicroUsd === null || a.costMicroUsd <= available.costMicroUsd)
    );
  };
  const floor = Math.min(options.minOutputTokens, wanted);
  if (!fits(floor)) return null;
  let lo = floor;
  let hi = wanted - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
