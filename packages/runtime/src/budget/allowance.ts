import { AgentryError, newId, positiveInt, systemClock, type Clock, type Logger } from "@agentry/core";
import { checkAmount, type BudgetLedger } from "./ledger.js";
import { budgetScopeKind, type BudgetScope, type BudgetScopeKind } from "./scope.js";
import type { BudgetAmount, BudgetAvailability, ReserveResult, SettleResult } from "./types.js";

/** What a model call needs from a ledger: {@link BudgetLedger} itself, or {@link AllowanceLedger} in front of it. */
export type CallLedger = Pick<BudgetLedger, "reserve" | "settle" | "release" | "extendLease" | "available">;

/** Options for {@link AllowanceLedger}. */
export interface AllowanceLedgerOptions {
  /** The shared ledger allowances are drawn from (and returned to). */
  ledger: BudgetLedger;
  /**
   * How many calls' worth one draw takes on a scope: a call that finds no room draws
   * `callsPerDraw × its amount` (just its amount when that does not fit). At least 1.
   */
  callsPerDraw: number;
  /** An allowance no call has used for this long is returned (settled at what it served). @defaultValue 1_000 */
  idleMs?: number;
  /**
   * An allowance stops serving new calls this long after it was drawn and is returned once its
   * calls are done, so a changed limit holds for new calls within this time. @defaultValue 5_000
   */
  maxAgeMs?: number;
  /** Names this process in the allowances' reservations (`allowance:<holder>`). @defaultValue `pid-<pid>` */
  holder?: string;
  /** @defaultValue the system clock */
  clock?: Clock;
  /** Receives overruns and failures to return an allowance (retried on the next beat). */
  logger?: Logger;
}

/** The allowances a process holds on one kind of scope: what `budget show` counts as reserved. */
export interface AllowanceHolding {
  kind: BudgetScopeKind;
  /** Allowances not yet returned. */
  open: number;
  /** What they hold reserved on the ledger, in all. */
  granted: BudgetAmount;
  /** Of that, what their finished calls used (charged when they are returned). */
  used: BudgetAmount;
}

/** One scope's share drawn from the ledger: a reservation this process serves calls from. */
interface Allowance {
  /** The ledger reservation behind it (one scope). */
  readonly id: string;
  readonly scope: BudgetScope;
  readonly granted: BudgetAmount;
  /** Held by calls in flight. */
  held: BudgetAmount;
  /** Settled by calls that finished: what the reservation is settled at when returned. */
  used: BudgetAmount;
  readonly drawnAt: number;
  lastUsedAt: number;
  /** Serves no new call; returned once `held` is zero. */
  retired: boolean;
  returning: boolean;
}

/** A call's reservation, served from one allowance per scope. */
interface CallReservation {
  readonly taskId: string;
  readonly scopes: BudgetScope[];
  readonly amount: BudgetAmount;
  readonly allowances: Allowance[];
  leaseExpiresAt: number;
}

type Refused = Extract<ReserveResult, { ok: false }>;

const ZERO: BudgetAmount = { tokens: 0, costMicroUsd: 0 };
/** Closed calls remembered so a repeated settle or release answers as the ledger would. */
const CLOSED_MEMORY = 10_000;

/**
 * Budget allowances drawn in chunks from the shared ledger, like a quota server's leases: a
 * process reserves `callsPerDraw` calls' worth on a scope at once (an ordinary ledger
 * reservation, so every limit holds exactly and a dead process's allowance is reaped at its
 * reserved amount), serves its calls' reservations and settles from it in memory, and returns it
 * (settled at exactly what its calls used) when idle, old or at close. The ledger is touched
 * once per draw and once per return instead of twice per call, which takes the per-call budget
 * work off the ledger's Redis slot.
 *
 * Invariants: a call is granted only from room its allowances hold (`held + used + amount ≤
 * granted` on every scope), and the allowances are granted by `reserve-budget.lua` against each
 * limit, so settled usage never exceeds a limit (barring overruns, as with the ledger). Once
 * every allowance is returned the ledger holds exactly the calls' actual usage. Costs: what
 * other processes hold as allowances counts as reserved, so near a limit a call may be refused
 * as contended until they return theirs (idle `idleMs`, at most `maxAgeMs` old); a process that
 * dies leaves its allowances to the reaper, charged in full (over-counted, never under).
 */
export class AllowanceLedger implements CallLedger {
  readonly #ledger: BudgetLedger;
  readonly #callsPerDraw: number;
  readonly #idleMs: number;
  readonly #maxAgeMs: number;
  readonly #holder: string;
  readonly #clock: Clock;
  readonly #logger: Logger | undefined;
  /** scope → the allowance new calls are served from. */
  readonly #current = new Map<BudgetScope, Allowance>();
  /** Every allowance not yet returned, current or retired. */
  readonly #open = new Set<Allowance>();
  /** scope → a draw in progress (one at a time per scope). */
  readonly #drawing = new Map<BudgetScope, Promise<unknown>>();
  readonly #calls = new Map<string, CallReservation>();
  readonly #closed = new Map<string, SettleResult | "released">();
  readonly #timer: NodeJS.Timeout;
  #stopped = false;

  constructor(opts: AllowanceLedgerOptions) {
    this.#ledger = opts.ledger;
    this.#callsPerDraw = positiveInt(opts.callsPerDraw, "callsPerDraw");
    this.#idleMs = positiveInt(opts.idleMs ?? 1_000, "idleMs");
    this.#maxAgeMs = positiveInt(opts.maxAgeMs ?? 5_000, "maxAgeMs");
    this.#holder = opts.holder ?? `pid-${process.pid}`;
    this.#clock = opts.clock ?? systemClock;
    this.#logger = opts.logger;
    this.#timer = setInterval(() => void this.returnIdle(), Math.max(50, Math.min(250, this.#idleMs / 2)));
    this.#timer.unref();
  }

  /** Allowances this process holds now (for tests and metrics). */
  get openAllowances(): number {
    return this.#open.size;
  }

  /** The allowances held now, by scope kind (kinds with none are left out): for metrics. */
  holdings(): AllowanceHolding[] {
    const byKind = new Map<BudgetScopeKind, AllowanceHolding>();
    for (const a of this.#open) {
      const kind = budgetScopeKind(a.scope);
      const h = byKind.get(kind) ?? { kind, open: 0, granted: { ...ZERO }, used: { ...ZERO } };
      h.open += 1;
      h.granted = add(h.granted, a.granted);
      h.used = add(h.used, a.used);
      byKind.set(kind, h);
    }
    return [...byKind.values()];
  }

  /**
   * Reserves `amount` on every scope, from this process's allowances, drawing a new one on each
   * scope that has no room. All scopes or none: a refusal on one scope holds nothing (allowances
   * drawn on the others stay for later calls). The refusal is the ledger's, for the draw of just
   * `amount`.
   */
  async reserve(input: {
    id?: string;
    taskId: string;
    scopes: BudgetScope[];
    amount: BudgetAmount;
    leaseMs?: number;
  }): Promise<ReserveResult> {
    if (this.#stopped) throw new AgentryError("CONFLICT", "the allowance ledger is closed");
    const id = input.id ?? newId("res");
    const existing = this.#calls.get(id);
    if (existing) return { ok: true, existing: true, reservation: this.#reservation(id, existing) };
    if (this.#closed.has(id)) throw new AgentryError("CONFLICT", `Reservation ${id} is already closed`);
    const amount = checkAmount(input.amount, "amount");
    const scopes = [...input.scopes];
    if (new Set(scopes).size !== scopes.length)
      throw new AgentryError("INVALID_INPUT", `a scope is listed twice: ${scopes.join(", ")}`);
    // Holds what it can at once, draws on the scopes without room (a draw holds its drawer's
    // amount before anyone else can use it), and goes round for what a draw of another call was
    // waited for. A refusal gives back what this call held.
    const held = new Map<BudgetScope, Allowance>();
    for (;;) {
      for (const s of scopes) {
        if (held.has(s)) continue;
        const a = this.#usable(s, amount);
        if (a) held.set(s, this.#hold(a, amount));
      }
      const missing = scopes.filter((s) => !held.has(s));
      if (missing.length === 0) break;
      const settled = await Promise.allSettled(missing.map((s) => this.#draw(s, amount)));
      let refused: Refused | undefined;
      let failure: unknown;
      for (const [i, r] of settled.entries()) {
        if (r.status === "rejected") failure ??= r.reason;
        else if (r.value !== null && "ok" in r.value) refused ??= r.value;
        else if (r.value !== null) held.set(missing[i] as BudgetScope, r.value);
      }
      if (refused || failure !== undefined) {
        // Nothing is held for a call that is not granted (a drawn allowance stays for others).
        for (const a of held.values()) a.held = sub(a.held, amount);
        if (failure !== undefined) throw failure;
        return refused as Refused;
      }
    }
    const call: CallReservation = {
      taskId: input.taskId,
      scopes,
      amount,
      allowances: scopes.map((s) => held.get(s) as Allowance),
      leaseExpiresAt: this.#clock.now() + (input.leaseMs ?? 120_000),
    };
    this.#calls.set(id, call);
    return { ok: true, existing: false, reservation: this.#reservation(id, call) };
  }

  /** Settles a call's reservation in memory at `actual`; its allowances carry it to the ledger when returned. */
  async settle(reservationId: string, actual: BudgetAmount): Promise<SettleResult> {
    checkAmount(actual, "actual");
    const call = this.#calls.get(reservationId);
    if (!call) return this.#closedAnswer(reservationId, actual);
    this.#calls.delete(reservationId);
    const now = this.#clock.now();
    for (const a of call.allowances) {
      a.held = sub(a.held, call.amount);
      a.used = add(a.used, actual);
      a.lastUsedAt = now;
    }
    const overrun = actual.tokens > call.amount.tokens || actual.costMicroUsd > call.amount.costMicroUsd;
    if (overrun) {
      this.#logger?.warn(
        { reservationId, actual, reserved: call.amount },
        "budget overrun: actual usage above the reservation was recorded as is",
      );
    }
    const result: SettleResult = { settled: true, alreadySettled: false, charged: actual, overrun };
    this.#remember(reservationId, result);
    return result;
  }

  /** Drops a call's reservation with no usage. True only for the call that dropped it. */
  async release(reservationId: string): Promise<boolean> {
    const call = this.#calls.get(reservationId);
    if (!call) return false;
    this.#calls.delete(reservationId);
    for (const a of call.allowances) a.held = sub(a.held, call.amount);
    this.#remember(reservationId, "released");
    return true;
  }

  /** Keeps the allowances under a call in flight leased (a slow call must not see them reaped). */
  async extendLease(reservationId: string, leaseMs?: number): Promise<boolean> {
    const call = this.#calls.get(reservationId);
    if (!call) return false;
    const ok = await Promise.all(call.allowances.map((a) => this.#ledger.extendLease(a.id, leaseMs)));
    return ok.every(Boolean);
  }

  /** What fits every scope now, after this process returns its idle allowances on them. */
  async available(scopes: BudgetScope[]): Promise<BudgetAvailability> {
    await this.#returnWhere((a) => scopes.includes(a.scope) && isZero(a.held));
    return this.#ledger.available(scopes);
  }

  /**
   * Returns every allowance no call holds that is idle, too old or retired: settled at what its
   * calls used (released when that is nothing). A return that fails stays open and is tried
   * again on the next beat; the ledger's settle is idempotent.
   */
  async returnIdle(): Promise<void> {
    const now = this.#clock.now();
    await this.#returnWhere(
      (a) =>
        isZero(a.held) &&
        (a.retired || now - a.lastUsedAt >= this.#idleMs || now - a.drawnAt >= this.#maxAgeMs),
    );
  }

  /**
   * Stops serving, waits up to `timeoutMs` for calls in flight, and returns every allowance.
   * Allowances still held by a call then stay with the ledger's reaper.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const a of this.#open) a.retired = true;
    const until = Date.now() + timeoutMs;
    while ([...this.#open].some((a) => !isZero(a.held)) && Date.now() < until) {
      await this.#returnWhere((a) => isZero(a.held));
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.#returnWhere((a) => isZero(a.held));
  }

  /** The allowance a call of `amount` can be served from on `scope`, if any. */
  #usable(scope: BudgetScope, amount: BudgetAmount): Allowance | undefined {
    const a = this.#current.get(scope);
    if (!a || a.retired) return undefined;
    if (this.#clock.now() - a.drawnAt >= this.#maxAgeMs) {
      this.#retire(a);
      return undefined;
    }
    const room = sub(sub(a.granted, a.held), a.used);
    return room.tokens >= amount.tokens && room.costMicroUsd >= amount.costMicroUsd ? a : undefined;
  }

  /**
   * Draws a new allowance on `scope`: `callsPerDraw × amount`, else just `amount`; on a
   * `contended` refusal this process first returns its own idle allowances on the scope and tries
   * once more. The new allowance comes back already holding `amount` for the caller. One draw
   * per scope at a time: a call that finds one running waits for it and gets `null` (look again).
   */
  async #draw(scope: BudgetScope, amount: BudgetAmount): Promise<Allowance | Refused | null> {
    const running = this.#drawing.get(scope);
    if (running) {
      await running.catch(() => undefined);
      return null;
    }
    const draw = (async (): Promise<Allowance | Refused> => {
      const reserve = (a: BudgetAmount) =>
        this.#ledger.reserve({ taskId: `allowance:${this.#holder}`, scopes: [scope], amount: a });
      let result = this.#callsPerDraw > 1 ? await reserve(times(amount, this.#callsPerDraw)) : undefined;
      if (!result?.ok) result = await reserve(amount);
      if (!result.ok && result.reason === "contended") {
        const returned = await this.#returnWhere((a) => a.scope === scope && isZero(a.held));
        if (returned > 0) result = await reserve(amount);
      }
      if (!result.ok) return result;
      const old = this.#current.get(scope);
      if (old) this.#retire(old);
      const now = this.#clock.now();
      const allowance: Allowance = {
        id: result.reservation.id,
        scope,
        granted: result.reservation.amount,
        held: amount,
        used: ZERO,
        drawnAt: now,
        lastUsedAt: now,
        retired: false,
        returning: false,
      };
      this.#open.add(allowance);
      this.#current.set(scope, allowance);
      return allowance;
    })();
    this.#drawing.set(scope, draw);
    try {
      return await draw;
    } finally {
      this.#drawing.delete(scope);
    }
  }

  #hold(a: Allowance, amount: BudgetAmount): Allowance {
    a.held = add(a.held, amount);
    a.lastUsedAt = this.#clock.now();
    return a;
  }

  #retire(a: Allowance): void {
    a.retired = true;
    if (this.#current.get(a.scope) === a) this.#current.delete(a.scope);
  }

  /** Returns the open allowances `pick` selects; resolves to how many went back. */
  async #returnWhere(pick: (a: Allowance) => boolean): Promise<number> {
    const chosen = [...this.#open].filter((a) => !a.returning && pick(a));
    if (chosen.length === 0) return 0;
    for (const a of chosen) {
      a.returning = true;
      this.#retire(a);
    }
    const done = await Promise.all(
      chosen.map(async (a) => {
        try {
          if (isZero(a.used)) await this.#ledger.release(a.id);
          else await this.#ledger.settle(a.id, a.used);
          this.#open.delete(a);
          return 1;
        } catch (err) {
          a.returning = false;
          this.#logger?.warn({ err, allowance: a.id, scope: a.scope }, "budget allowance not returned yet");
          return 0;
        }
      }),
    );
    return done.reduce<number>((n, x) => n + x, 0);
  }

  #reservation(id: string, call: CallReservation) {
    return {
      id,
      taskId: call.taskId,
      scopes: call.scopes,
      amount: call.amount,
      leaseExpiresAt: call.leaseExpiresAt,
    };
  }

  #remember(id: string, result: SettleResult | "released"): void {
    this.#closed.set(id, result);
    if (this.#closed.size > CLOSED_MEMORY) {
      const oldest = this.#closed.keys().next().value;
      if (oldest !== undefined) this.#closed.delete(oldest);
    }
  }

  #closedAnswer(id: string, actual: BudgetAmount): SettleResult {
    const before = this.#closed.get(id);
    if (before === undefined)
      throw new AgentryError("NOT_FOUND", `No reservation ${id}`, { details: { reservationId: id } });
    if (before === "released")
      return { settled: false, alreadySettled: false, charged: ZERO, overrun: false };
    const overrun =
      actual.tokens > before.charged.tokens || actual.costMicroUsd > before.charged.costMicroUsd;
    return { settled: false, alreadySettled: true, charged: before.charged, overrun };
  }
}

function add(a: BudgetAmount, b: BudgetAmount): BudgetAmount {
  return { tokens: a.tokens + b.tokens, costMicroUsd: a.costMicroUsd + b.costMicroUsd };
}

function sub(a: BudgetAmount, b: BudgetAmount): BudgetAmount {
  return { tokens: a.tokens - b.tokens, costMicroUsd: a.costMicroUsd - b.costMicroUsd };
}

function times(a: BudgetAmount, n: number): BudgetAmount {
  return { tokens: a.tokens * n, costMicroUsd: a.costMicroUsd * n };
}

function isZero(a: BudgetAmount): boolean {
  return a.tokens === 0 && a.costMicroUsd === 0;
}

/** The holdings of several allowance ledgers (one per budget ledger a process draws on), by kind. */
export function mergeAllowanceHoldings(lists: readonly AllowanceHolding[][]): AllowanceHolding[] {
  const byKind = new Map<BudgetScopeKind, AllowanceHolding>();
  for (const h of lists.flat()) {
    const sum = byKind.get(h.kind);
    byKind.set(
      h.kind,
      sum
        ? {
            kind: h.kind,
            open: sum.open + h.open,
            granted: add(sum.granted, h.granted),
            used: add(sum.used, h.used),
          }
        : { ...h },
    );
  }
  return [...byKind.values()];
}
