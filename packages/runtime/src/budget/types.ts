import type { BudgetScope } from "./scope.js";

/** How often a limit starts over. Periods roll over at UTC day / month boundaries. */
export type BudgetPeriod = "none" | "day" | "month";

/**
 * A cap on one scope. Either figure may be absent (that dimension is not capped);
 * at least one must be present. Integers only: tokens, and cost in micro-USD.
 */
export interface BudgetLimit {
  maxTokens?: number;
  maxCostMicroUsd?: number;
  period: BudgetPeriod;
}

/** An amount of spend: whole tokens and whole micro-USD. */
export interface BudgetAmount {
  tokens: number;
  costMicroUsd: number;
}

/** An amount held on every scope of a call until it is settled, released or reaped. */
export interface Reservation {
  id: string;
  scopes: BudgetScope[];
  amount: BudgetAmount;
  /** Epoch ms after which {@link BudgetLedger.reapExpired} settles it at `amount`. */
  leaseExpiresAt: number;
  taskId: string;
}

/** The figures behind a refused reservation, for the scope that refused it. */
export interface BudgetRefusal {
  scope: BudgetScope;
  /** The dimension that did not fit. */
  dimension: "tokens" | "costMicroUsd";
  limit: BudgetLimit;
  /** Settled usage in the scope's current period. */
  used: BudgetAmount;
  /** Held by reservations in flight. */
  reserved: BudgetAmount;
  requested: BudgetAmount;
  /** Period label the figures belong to (`2026-11-25`, `2026-11` or `none`). */
  period: string;
}

/**
 * Outcome of {@link BudgetLedger.reserve}:
 * - `exceeded`: would not fit even with no reservations in flight (waiting does not help).
 * - `contended`: fits the limit, but not beside other reservations in flight; retry after `retryAfterMs`.
 */
export type ReserveResult =
  | {
      ok: true;
      reservation: Reservation;
      /** True when this id was already reserved (a retried call). */ existing: boolean;
    }
  | ({ ok: false; reason: "exceeded" } & BudgetRefusal)
  | ({ ok: false; reason: "contended"; retryAfterMs: number } & BudgetRefusal);

/** Outcome of {@link BudgetLedger.settle}. */
export interface SettleResult {
  /** True when this call converted the reservation into usage. */
  settled: boolean;
  /** True when an earlier settle (or the lease reaper) already did; nothing changed. */
  alreadySettled: boolean;
  /** What was charged to every scope (by this call, or by the earlier settle or reap). */
  charged: BudgetAmount;
  /**
   * True when `actual` was larger than the reservation. The usage is recorded as is, so a
   * scope may end above its limit; a conservative estimate (input + max_tokens) prevents this.
   */
  overrun: boolean;
  /**
   * True when the reservation had been reaped (its lease ran out while the caller was cut off)
   * and this settle corrected the reaped charge to `actual`.
   */
  correctedReap?: boolean;
}

/** A reservation whose lease ran out and that was settled at its reserved amount. */
export interface ExpiredReservation extends Reservation {
  /** Period label of each scope the amount was charged to (same order as `scopes`). */
  periods: string[];
  /** Epoch ms at which it was reaped. */
  reapedAt: number;
}

/** A scope's limit and figures for its current period (used, reserved, remaining). */
export interface BudgetStats {
  scope: BudgetScope;
  limit: BudgetLimit | null;
  used: BudgetAmount;
  reserved: BudgetAmount;
  /** `max - used - reserved`, never below 0; `null` for a dimension without a cap. */
  remaining: { tokens: number | null; costMicroUsd: number | null };
  /** `2026-11-25` (day), `2026-11` (month) or `none`. */
  period: string;
}

/** What fits every given scope right now. */
export interface BudgetAvailability {
  /** `null` when no scope caps tokens. */
  tokens: number | null;
  /** `null` when no scope caps cost. */
  costMicroUsd: number | null;
  /** The scope with the least room (tokens first, then cost). */
  limitingScope?: BudgetScope;
}
