import {
  AgentryError,
  defineScripts,
  newId,
  positiveInt,
  systemClock,
  type Clock,
  type Logger,
} from "@agentry/core";
import type { Redis } from "ioredis";
import { budgetKeys, type BudgetKeys } from "./keys.js";
import { periodLabel } from "./period.js";
import { isBudgetScope, scopeSyntaxHelp, type BudgetScope } from "./scope.js";
import type {
  BudgetAmount,
  BudgetAvailability,
  BudgetLimit,
  BudgetPeriod,
  BudgetStats,
  ExpiredReservation,
  ReserveResult,
  SettleResult,
} from "./types.js";

type ScriptReply = (string | number | null)[];
const scripts = defineScripts<{
  /** ARGV: see the script's header. It builds each scope's limit and usage keys itself. */
  reserveBudget: (
    keys: [reservation: string, done: string, leases: string, scopes: string],
    args: (string | number)[],
  ) => ScriptReply;
  /** It builds each scope's usage key itself, from what the reservation stored. */
  closeReservation: (
    keys: [reservation: string, done: string, leases: string],
    args: [
      id: string,
      mode: string,
      tokens: number,
      costMicroUsd: number,
      now: number,
      settledRetentionMs: number,
      reapedRetentionMs: number,
    ],
  ) => ScriptReply;
  extendBudgetLease: (
    keys: [reservation: string, leases: string],
    args: [id: string, now: number, leaseMs: number],
  ) => number;
}>(import.meta.url, {
  reserveBudget: "./reserve-budget.lua",
  closeReservation: "./close-reservation.lua",
  extendBudgetLease: "./extend-budget-lease-2.lua",
});

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const DAY_USAGE_TTL_S = 35 * 86_400;
const MONTH_USAGE_TTL_S = 400 * 86_400;

/** Options for {@link BudgetLedger}. */
export interface BudgetLedgerOptions {
  /**
   * The client. The ledger defines its Lua commands on it (`defineCommand`). Never set
   * ioredis `keyPrefix` on it: keys are built from {@link BudgetLedgerOptions.prefix}.
   */
  redis: Redis;
  /**
   * Key prefix, e.g. `agentry` or `{agentry}`. Every key is built from it, so with a hash
   * tag all budget keys share one slot. **Redis Cluster users must use a tagged prefix**:
   * the scripts touch several keys at once.
   */
  prefix: string;
  /** Lease of a reservation; once it runs out the reaper settles it at its reserved amount. @defaultValue 120_000 */
  leaseMs?: number;
  /** @defaultValue the system clock */
  clock?: Clock;
  /** Called once per reservation settled by {@link BudgetLedger.reapExpired} (audit hook). */
  onLeaseExpired?: (r: ExpiredReservation) => Promise<void> | void;
  /** Suggested wait after a `contended` refusal. @defaultValue 1_000 */
  contendedRetryMs?: number;
  /**
   * How long the marker of a settled or released reservation is kept, so a repeated settle or
   * release (a retry of one whose reply was lost) changes nothing. Only the closer's own retries
   * come back, within seconds. @defaultValue 1 h
   */
  settledRetentionMs?: number;
  /**
   * How long the marker of a reaped reservation is kept (with its scopes), so a settle that
   * arrives late, from a worker cut off past its lease, still corrects the charge to what the
   * provider billed. @defaultValue 7 days
   */
  reapedRetentionMs?: number;
  /** Receives a warning for every overrun (actual above reserved). */
  logger?: Logger;
}

/**
 * Shared token and cost budgets in Redis (a resource manager, made distributed).
 *
 * A model call reserves its worst case on every scope at once (global, tenant, user,
 * session), then settles with the real usage. Each step is one Lua script, so any number
 * of processes can share a budget. Invariant: settled usage never exceeds a scope's limit
 * as long as every settle's actual amount is at most what was reserved (and the limit is
 * not lowered below current usage). An actual above the reservation is recorded as is and
 * flagged as an overrun.
 *
 * Usage is kept per period: `none`, UTC day or UTC month, chosen by the scope's limit at
 * reserve time. A reservation is charged to the period it was made in. Scopes without a
 * limit are tracked under `none`. Day usage is kept 35 days, month usage 400 days; `none`
 * usage is kept until deleted.
 */
export class BudgetLedger {
  readonly #redis: Redis;
  readonly #keys: BudgetKeys;
  readonly #leaseMs: number;
  readonly #clock: Clock;
  readonly #onLeaseExpired: BudgetLedgerOptions["onLeaseExpired"];
  readonly #contendedRetryMs: number;
  readonly #settledRetentionMs: number;
  readonly #reapedRetentionMs: number;
  readonly #logger: Logger | undefined;

  constructor(opts: BudgetLedgerOptions) {
    this.#redis = opts.redis;
    this.#keys = budgetKeys(opts.prefix);
    this.#leaseMs = positiveInt(opts.leaseMs ?? 120_000, "leaseMs");
    this.#clock = opts.clock ?? systemClock;
    this.#onLeaseExpired = opts.onLeaseExpired;
    this.#contendedRetryMs = positiveInt(opts.contendedRetryMs ?? 1_000, "contendedRetryMs");
    this.#settledRetentionMs = positiveInt(opts.settledRetentionMs ?? HOUR_MS, "settledRetentionMs");
    this.#reapedRetentionMs = positiveInt(opts.reapedRetentionMs ?? 7 * DAY_MS, "reapedRetentionMs");
    this.#logger = opts.logger;
  }

  /** Sets (replaces) a scope's limit. @throws `INVALID_INPUT` for a bad scope or limit. */
  async setLimit(scope: BudgetScope, limit: BudgetLimit): Promise<void> {
    checkScope(scope);
    const fields = limitFields(limit);
    const key = this.#keys.limit(scope);
    await this.#redis.multi().del(key).hset(key, fields).sadd(this.#keys.scopes, scope).exec();
  }

  /** The scope's limit, or `null` when it has none. */
  async getLimit(scope: BudgetScope): Promise<BudgetLimit | null> {
    checkScope(scope);
    return parseLimit(await this.#redis.hgetall(this.#keys.limit(scope)));
  }

  /** Removes a scope's limit. Its usage stays tracked. */
  async removeLimit(scope: BudgetScope): Promise<void> {
    checkScope(scope);
    await this.#redis.del(this.#keys.limit(scope));
  }

  /**
   * Atomically reserves `amount` on ALL given scopes, or on none. Scopes without a limit
   * are still tracked (usage accounting). Reserving an id that is already reserved returns
   * that reservation (`existing: true`), so a retried call does not reserve twice.
   * @throws `INVALID_INPUT` for bad input; `CONFLICT` when the id was already settled or released.
   */
  async reserve(input: {
    /** @defaultValue a new `res_…` id */
    id?: string;
    taskId: string;
    scopes: BudgetScope[];
    amount: BudgetAmount;
    /** @defaultValue the ledger's `leaseMs` */
    leaseMs?: number;
  }): Promise<ReserveResult> {
    const scopes = checkScopes(input.scopes);
    const amount = checkAmount(input.amount, "amount");
    const leaseMs = positiveInt(input.leaseMs ?? this.#leaseMs, "leaseMs");
    const id = input.id ?? newId("res");
    checkId(id);
    if (input.taskId.length === 0) throw invalid("taskId must not be empty");
    const now = this.#clock.now();
    const day = periodLabel("day", now);
    const month = periodLabel("month", now);
    const k = this.#keys;
    const keys = [k.reservation(id), k.done(id), k.leases, k.scopes] as const;
    const reply = await scripts.reserveBudget(
      this.#redis,
      [...keys],
      [
        id,
        input.taskId,
        amount.tokens,
        amount.costMicroUsd,
        now,
        leaseMs,
        day,
        month,
        DAY_USAGE_TTL_S,
        MONTH_USAGE_TTL_S,
        ...scopes,
      ],
    );
    const tag = str(reply[0]);
    switch (tag) {
      case "ok": {
        return {
          ok: true,
          existing: false,
          reservation: { id, taskId: input.taskId, scopes, amount, leaseExpiresAt: num(reply[1]) },
        };
      }
      case "existing":
        return {
          ok: true,
          existing: true,
          reservation: {
            id,
            taskId: str(reply[1]),
            amount: { tokens: num(reply[2]), costMicroUsd: num(reply[3]) },
            leaseExpiresAt: num(reply[4]),
            scopes: str(reply[5]).split("\n") as BudgetScope[],
          },
        };
      case "done":
        throw new AgentryError(
          "CONFLICT",
          `Reservation ${id} was already ${str(reply[1])}; reserve with a new id`,
          {
            details: { reservationId: id, state: str(reply[1]) },
          },
        );
      case "exceeded":
      case "contended": {
        const scope = scopes[num(reply[1]) - 1];
        if (scope === undefined)
          throw new AgentryError("INTERNAL", "budget script returned a bad scope index");
        const maxT = num(reply[9]);
        const maxC = num(reply[10]);
        const figures = {
          scope,
          dimension: str(reply[2]) === "tokens" ? ("tokens" as const) : ("costMicroUsd" as const),
          period: str(reply[3]),
          limit: {
            period: str(reply[4]) as BudgetPeriod,
            ...(maxT >= 0 ? { maxTokens: maxT } : {}),
            ...(maxC >= 0 ? { maxCostMicroUsd: maxC } : {}),
          },
          used: { tokens: num(reply[5]), costMicroUsd: num(reply[6]) },
          reserved: { tokens: num(reply[7]), costMicroUsd: num(reply[8]) },
          requested: amount,
        };
        return tag === "exceeded"
          ? { ok: false, reason: "exceeded", ...figures }
          : { ok: false, reason: "contended", retryAfterMs: this.#contendedRetryMs, ...figures };
      }
      default:
        throw new AgentryError("INTERNAL", `unexpected budget script reply ${tag}`);
    }
  }

  /**
   * The largest amount that fits every scope right now (`max - used - reserved`, at least 0),
   * for clamping `max_tokens`. A dimension no scope caps is `null`.
   */
  async available(scopes: BudgetScope[]): Promise<BudgetAvailability> {
    const stats = await this.#readStats(checkScopes(scopes));
    let tokens: number | null = null;
    let cost: number | null = null;
    let tokenScope: BudgetScope | undefined;
    let costScope: BudgetScope | undefined;
    for (const s of stats) {
      const t = s.remaining.tokens;
      const c = s.remaining.costMicroUsd;
      if (t !== null && (tokens === null || t < tokens)) [tokens, tokenScope] = [t, s.scope];
      if (c !== null && (cost === null || c < cost)) [cost, costScope] = [c, s.scope];
    }
    const limitingScope = tokenScope ?? costScope;
    return { tokens, costMicroUsd: cost, ...(limitingScope ? { limitingScope } : {}) };
  }

  /**
   * Converts a reservation into real usage on every scope it holds. Idempotent: a second
   * settle of the same id changes nothing and reports the first charge (`alreadySettled`);
   * so does a settle after the lease reaper charged the reserved amount. A settle after
   * {@link release} charges nothing (`settled: false, alreadySettled: false`).
   *
   * `actual` may exceed the reservation: it is recorded as is (the scope may then end above
   * its limit) and the result says `overrun: true`. Never under-reserve to avoid this.
   * @throws `NOT_FOUND` for an id that was never reserved (or whose marker has expired).
   */
  async settle(reservationId: string, actual: BudgetAmount): Promise<SettleResult> {
    checkId(reservationId);
    const amount = checkAmount(actual, "actual");
    const reply = await this.#close(reservationId, "settle", amount);
    const tag = str(reply[0]);
    if (tag === "ok") {
      const overrun = amount.tokens > num(reply[3]) || amount.costMicroUsd > num(reply[4]);
      if (overrun) {
        this.#logger?.warn(
          { reservationId, actual: amount, reserved: { tokens: num(reply[3]), costMicroUsd: num(reply[4]) } },
          "budget overrun: actual usage above the reservation was recorded as is",
        );
      }
      return { settled: true, alreadySettled: false, charged: amount, overrun };
    }
    if (tag === "corrected") {
      this.#logger?.warn(
        { reservationId, actual: amount, reaped: { tokens: num(reply[3]), costMicroUsd: num(reply[4]) } },
        "budget: a reaped reservation was settled late; the charge was corrected to the actual usage",
      );
      return {
        settled: true,
        alreadySettled: false,
        charged: amount,
        overrun: amount.tokens > num(reply[3]) || amount.costMicroUsd > num(reply[4]),
        correctedReap: true,
      };
    }
    if (tag === "done") {
      const state = str(reply[1]);
      const charged = { tokens: num(reply[2]), costMicroUsd: num(reply[3]) };
      if (state === "released") return { settled: false, alreadySettled: false, charged, overrun: false };
      const overrun = amount.tokens > charged.tokens || amount.costMicroUsd > charged.costMicroUsd;
      return { settled: false, alreadySettled: true, charged, overrun };
    }
    throw new AgentryError("NOT_FOUND", `No reservation ${reservationId}`, { details: { reservationId } });
  }

  /**
   * Drops a reservation without usage (the call failed before the provider billed
   * anything). Idempotent: true only for the call that dropped a live reservation.
   */
  async release(reservationId: string): Promise<boolean> {
    checkId(reservationId);
    const reply = await this.#close(reservationId, "release", { tokens: 0, costMicroUsd: 0 });
    return str(reply[0]) === "ok";
  }

  /**
   * Extends a live reservation's lease to now + `leaseMs` (default: the ledger's).
   * False when the reservation is closed, unknown, or its lease has already run out.
   */
  async extendLease(reservationId: string, leaseMs?: number): Promise<boolean> {
    checkId(reservationId);
    const ms = positiveInt(leaseMs ?? this.#leaseMs, "leaseMs");
    const k = this.#keys;
    const reply = await scripts.extendBudgetLease(
      this.#redis,
      [k.reservation(reservationId), k.leases],
      [reservationId, this.#clock.now(), ms],
    );
    return Number(reply) > 0;
  }

  /**
   * Settles every reservation whose lease has run out AT ITS RESERVED AMOUNT (never
   * under-count), up to `limit` of them, calling `onLeaseExpired` for each. Safe to run from
   * every worker at once: each expired reservation is settled by exactly one caller.
   * @throws `AUDIT_FAILED` when `onLeaseExpired` threw (after every reservation was handled).
   */
  async reapExpired(limit = 100): Promise<ExpiredReservation[]> {
    const now = this.#clock.now();
    const ids = await this.#redis.zrangebyscore(
      this.#keys.leases,
      "-inf",
      now,
      "LIMIT",
      0,
      positiveInt(limit, "limit"),
    );
    const reaped: ExpiredReservation[] = [];
    const failures: unknown[] = [];
    for (const id of ids) {
      const reply = await this.#close(id, "reap", { tokens: 0, costMicroUsd: 0 });
      if (str(reply[0]) !== "ok") continue;
      const expired: ExpiredReservation = {
        id,
        taskId: str(reply[5]),
        amount: { tokens: num(reply[1]), costMicroUsd: num(reply[2]) },
        scopes: str(reply[6]).split("\n") as BudgetScope[],
        periods: str(reply[7]).split("\n"),
        leaseExpiresAt: num(reply[8]),
        reapedAt: now,
      };
      reaped.push(expired);
      try {
        await this.#onLeaseExpired?.(expired);
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) {
      throw new AgentryError(
        "AUDIT_FAILED",
        `onLeaseExpired failed for ${failures.length} reaped reservation(s)`,
        {
          cause: failures[0],
          details: { reaped: reaped.map((r) => r.id) },
        },
      );
    }
    return reaped;
  }

  /** A scope's limit, used, reserved and remaining figures for its current period. */
  async getStats(scope: BudgetScope): Promise<BudgetStats> {
    const [stats] = await this.#readStats([checkScope(scope)]);
    if (!stats) throw new AgentryError("INTERNAL", "no stats read");
    return stats;
  }

  /** Every scope that has a limit or tracked usage, sorted. */
  async listScopes(): Promise<BudgetScope[]> {
    const members = await this.#redis.smembers(this.#keys.scopes);
    return members.filter(isBudgetScope).sort();
  }

  #close(id: string, mode: "settle" | "release" | "reap", actual: BudgetAmount): Promise<ScriptReply> {
    const k = this.#keys;
    return scripts.closeReservation(
      this.#redis,
      [k.reservation(id), k.done(id), k.leases],
      [
        id,
        mode,
        actual.tokens,
        actual.costMicroUsd,
        this.#clock.now(),
        this.#settledRetentionMs,
        this.#reapedRetentionMs,
      ],
    );
  }

  async #readStats(scopes: BudgetScope[]): Promise<BudgetStats[]> {
    const now = this.#clock.now();
    const day = periodLabel("day", now);
    const month = periodLabel("month", now);
    const k = this.#keys;
    // One MULTI: a consistent snapshot of limits and all three candidate periods.
    const tx = this.#redis.multi();
    for (const s of scopes) {
      tx.hgetall(k.limit(s));
      for (const p of ["none", day, month])
        tx.hmget(k.usage(s, p), "usedTokens", "usedCost", "resTokens", "resCost");
    }
    const results = await tx.exec();
    if (!results) throw new AgentryError("REDIS_UNAVAILABLE", "budget stats transaction was aborted");
    return scopes.map((scope, i) => {
      const at = (j: number) => {
        const [err, value] = results[i * 4 + j] ?? [null, null];
        if (err) throw err;
        return value;
      };
      const limit = parseLimit(at(0) as Record<string, string>);
      const period = limit?.period ?? "none";
      const usage = at(period === "none" ? 1 : period === "day" ? 2 : 3) as (string | null)[];
      const [usedT, usedC, resT, resC] = [0, 1, 2, 3].map((j) => Number(usage[j] ?? 0)) as [
        number,
        number,
        number,
        number,
      ];
      const room = (max: number | undefined, used: number, res: number) =>
        max === undefined ? null : Math.max(0, max - used - res);
      return {
        scope,
        limit,
        used: { tokens: usedT, costMicroUsd: usedC },
        reserved: { tokens: resT, costMicroUsd: resC },
        remaining: {
          tokens: room(limit?.maxTokens, usedT, resT),
          costMicroUsd: room(limit?.maxCostMicroUsd, usedC, resC),
        },
        period: periodLabel(period, now),
      };
    });
  }
}

function invalid(message: string, details?: Record<string, unknown>): AgentryError {
  return new AgentryError("INVALID_INPUT", message, details ? { details } : {});
}

function nonNegativeInt(n: unknown, name: string): number {
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
    throw invalid(`${name} must be a non-negative integer (got ${String(n)})`);
  }
  return n;
}

/** Whole, non-negative tokens and micro-USD, or `INVALID_INPUT` (also used by the allowance ledger). */
export function checkAmount(a: BudgetAmount, name: string): BudgetAmount {
  return {
    tokens: nonNegativeInt(a.tokens, `${name}.tokens`),
    costMicroUsd: nonNegativeInt(a.costMicroUsd, `${name}.costMicroUsd`),
  };
}

function checkScope(scope: BudgetScope): BudgetScope {
  if (!isBudgetScope(scope)) throw invalid(scopeSyntaxHelp(String(scope)), { scope });
  return scope;
}

function checkScopes(scopes: BudgetScope[]): BudgetScope[] {
  if (scopes.length === 0) throw invalid("at least one budget scope is required");
  scopes.forEach(checkScope);
  if (new Set(scopes).size !== scopes.length) throw invalid("budget scopes must not repeat", { scopes });
  return [...scopes];
}

function checkId(id: string): void {
  if (!/^[^\s{}]{1,200}$/u.test(id)) throw invalid(`Invalid reservation id "${id}"`);
}

function limitFields(limit: BudgetLimit): Record<string, string> {
  if (!["none", "day", "month"].includes(limit.period))
    throw invalid(`Invalid budget period "${limit.period}"`);
  if (limit.maxTokens === undefined && limit.maxCostMicroUsd === undefined) {
    throw invalid("a budget limit needs maxTokens, maxCostMicroUsd or both");
  }
  const fields: Record<string, string> = { period: limit.period };
  if (limit.maxTokens !== undefined) fields.maxTokens = String(nonNegativeInt(limit.maxTokens, "maxTokens"));
  if (limit.maxCostMicroUsd !== undefined) {
    fields.maxCost = String(nonNegativeInt(limit.maxCostMicroUsd, "maxCostMicroUsd"));
  }
  return fields;
}

function parseLimit(h: Record<string, string>): BudgetLimit | null {
  if (h.period === undefined) return null;
  return {
    period: h.period as BudgetPeriod,
    ...(h.maxTokens !== undefined ? { maxTokens: Number(h.maxTokens) } : {}),
    ...(h.maxCost !== undefined ? { maxCostMicroUsd: Number(h.maxCost) } : {}),
  };
}

function str(v: unknown): string {
  return v === null || v === undefined ? "" : String(v);
}

function num(v: unknown): number {
  return Number(v);
}
