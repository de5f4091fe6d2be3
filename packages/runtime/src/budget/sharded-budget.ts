import { AgentryError, newId, shardOfSession } from "@agentry/core";
import type { CallLedger } from "./allowance.js";
import type { BudgetLedger } from "./ledger.js";
import { budgetScopeKind, type BudgetScope } from "./scope.js";
import type { BudgetAvailability, BudgetLimit, ReserveResult, SettleResult } from "./types.js";

/**
 * A session scope's tenant and session id (`tenant:<t>:session:<s>`); `undefined` for any other
 * kind of scope.
 */
export function sessionOfScope(scope: BudgetScope): { tenant: string; sessionId: string } | undefined {
  if (budgetScopeKind(scope) !== "session") return undefined;
  const match = /^tenant:([^:]+):session:(.+)$/su.exec(scope);
  return match ? { tenant: match[1] as string, sessionId: match[2] as string } : undefined;
}

/**
 * The budget ledgers of a sharded deployment, by scope: a session's scope lives on its session's
 * queue shard (every task of the session runs there, so its budget keys sit beside its history),
 * every other scope (global, tenant, user: shared by sessions on every shard) on the global slot.
 * With one shard both are the same ledger. The admin side of {@link BudgetLedger}: limits and
 * figures of any scope, and every scope of every ledger.
 */
export class ShardedBudget {
  readonly #global: BudgetLedger;
  readonly #shards: readonly BudgetLedger[];

  /** `shards[i]` is shard i's ledger (under its prefix); one shard: `[global]`. */
  constructor(global: BudgetLedger, shards: readonly BudgetLedger[]) {
    if (shards.length === 0)
      throw new AgentryError("INVALID_CONFIG", "a sharded budget needs at least one shard");
    this.#global = global;
    this.#shards = shards;
  }

  /** The shard whose ledger holds `scope`; `undefined` for a scope on the global ledger. */
  shardOf(scope: BudgetScope): number | undefined {
    const session = sessionOfScope(scope);
    if (!session || this.#shards.length === 1) return undefined;
    return shardOfSession(session.tenant, session.sessionId, this.#shards.length);
  }

  /** The ledger that holds `scope`. */
  ledgerFor(scope: BudgetScope): BudgetLedger {
    const shard = this.shardOf(scope);
    return shard === undefined ? this.#global : (this.#shards[shard] as BudgetLedger);
  }

  /** Shard `index`'s ledger. */
  shard(index: number): BudgetLedger {
    const ledger = this.#shards[index];
    if (!ledger) throw new AgentryError("INVALID_INPUT", `no shard ${index}`);
    return ledger;
  }

  /** Every distinct ledger: the global one first, then the shards'. */
  get ledgers(): BudgetLedger[] {
    return [...new Set([this.#global, ...this.#shards])];
  }

  getLimit(scope: BudgetScope): ReturnType<BudgetLedger["getLimit"]> {
    return this.ledgerFor(scope).getLimit(scope);
  }

  setLimit(scope: BudgetScope, limit: BudgetLimit): Promise<void> {
    return this.ledgerFor(scope).setLimit(scope, limit);
  }

  removeLimit(scope: BudgetScope): Promise<void> {
    return this.ledgerFor(scope).removeLimit(scope);
  }

  getStats(scope: BudgetScope): ReturnType<BudgetLedger["getStats"]> {
    return this.ledgerFor(scope).getStats(scope);
  }

  /**
   * Every scope with a limit or tracked usage on any ledger, sorted. A scope a ledger lists but
   * does not hold (a session scope on the global slot, from before the deployment was sharded)
   * is left out: its figures are no longer the ones enforced.
   */
  async listScopes(): Promise<BudgetScope[]> {
    const lists = await Promise.all(
      this.ledgers.map(async (ledger) =>
        (await ledger.listScopes()).filter((s) => this.ledgerFor(s) === ledger),
      ),
    );
    return [...new Set(lists.flat())].sort();
  }
}

/**
 * A call ledger over the global slot's and the shards': `localFor` names the ledger a scope lives
 * on when it is not `main` (a session's: its session's shard, wherever the call runs; a group's
 * task can run on another shard than its session's). A reservation holds on both or on neither:
 * the local part is reserved first, and given back when the main part is refused or fails. Each
 * part is exact on its own ledger, so no limit is overspent. One id names both parts; settle,
 * release and lease extension go to the parts the id has.
 */
export class SplitCallLedger implements CallLedger {
  readonly #main: CallLedger;
  readonly #localFor: (scope: BudgetScope) => CallLedger | undefined;
  /** Where each open reservation's parts are: its local ledger, if any, and whether main has one. */
  readonly #parts = new Map<string, { local?: CallLedger; main: boolean }>();

  constructor(options: { main: CallLedger; localFor: (scope: BudgetScope) => CallLedger | undefined }) {
    this.#main = options.main;
    this.#localFor = options.localFor;
  }

  /** The call's scopes by ledger: the local ones (all on one ledger) and the main ones. */
  #split(scopes: readonly BudgetScope[]): {
    local?: CallLedger;
    localScopes: BudgetScope[];
    main: BudgetScope[];
  } {
    let local: CallLedger | undefined;
    const localScopes: BudgetScope[] = [];
    const main: BudgetScope[] = [];
    for (const scope of scopes) {
      const ledger = this.#localFor(scope);
      if (!ledger) {
        main.push(scope);
        continue;
      }
      if (local && ledger !== local)
        throw new AgentryError(
          "INVALID_INPUT",
          `a call's session scopes must share a shard: ${scopes.join(", ")}`,
        );
      local = ledger;
      localScopes.push(scope);
    }
    return { ...(local ? { local } : {}), localScopes, main };
  }

  async reserve(input: Parameters<CallLedger["reserve"]>[0]): Promise<ReserveResult> {
    const { local, localScopes, main } = this.#split(input.scopes);
    const id = input.id ?? newId("res");
    if (!local || main.length === 0) {
      const result = await (local ?? this.#main).reserve({ ...input, id });
      if (result.ok) this.#parts.set(id, local ? { local, main: false } : { main: true });
      return result;
    }
    const localPart = await local.reserve({ ...input, id, scopes: localScopes });
    if (!localPart.ok) return localPart;
    let mainPart: ReserveResult;
    try {
      mainPart = await this.#main.reserve({ ...input, id, scopes: main });
    } catch (err) {
      await local.release(id).catch(() => undefined);
      throw err;
    }
    if (!mainPart.ok) {
      await local.release(id);
      return mainPart;
    }
    this.#parts.set(id, { local, main: true });
    return {
      ok: true,
      existing: localPart.existing && mainPart.existing,
      reservation: {
        ...mainPart.reservation,
        scopes: [...input.scopes],
        leaseExpiresAt: Math.min(mainPart.reservation.leaseExpiresAt, localPart.reservation.leaseExpiresAt),
      },
    };
  }

  async settle(reservationId: string, actual: Parameters<CallLedger["settle"]>[1]): Promise<SettleResult> {
    const results = await this.#onParts(reservationId, (l) => l.settle(reservationId, actual), true);
    const first = results[0] as SettleResult;
    return { ...first, overrun: results.some((r) => r.overrun) };
  }

  async release(reservationId: string): Promise<boolean> {
    return (await this.#onParts(reservationId, (l) => l.release(reservationId), true))[0] as boolean;
  }

  async extendLease(reservationId: string, leaseMs?: number): Promise<boolean> {
    return (await this.#onParts(reservationId, (l) => l.extendLease(reservationId, leaseMs), false)).every(
      Boolean,
    );
  }

  /**
   * Runs `op` on the ledgers holding the reservation's parts (main first); `closes` forgets it
   * afterwards. An id this ledger does not know (closed already) gets the main ledger's answer.
   */
  async #onParts<T>(id: string, op: (ledger: CallLedger) => Promise<T>, closes: boolean): Promise<T[]> {
    const parts = this.#parts.get(id) ?? { main: true };
    try {
      return await Promise.all(
        [...(parts.main ? [this.#main] : []), ...(parts.local ? [parts.local] : [])].map(op),
      );
    } finally {
      if (closes) this.#parts.delete(id);
    }
  }

  async available(scopes: BudgetScope[]): Promise<BudgetAvailability> {
    const { local, localScopes, main } = this.#split(scopes);
    const parts = await Promise.all([
      ...(main.length > 0 ? [this.#main.available(main)] : []),
      ...(local ? [local.available(localScopes)] : []),
    ]);
    // The least room of any scope, per dimension; the limiting scope is the one with the least tokens, else cost.
    return parts.reduce<BudgetAvailability>((a, b) => {
      const tokens = least(a.tokens, b.tokens);
      const costMicroUsd = least(a.costMicroUsd, b.costMicroUsd);
      const fromB = a.tokens !== tokens || (tokens === null && a.costMicroUsd !== costMicroUsd);
      const limitingScope = fromB ? b.limitingScope : a.limitingScope;
      return { tokens, costMicroUsd, ...(limitingScope ? { limitingScope } : {}) };
    }, NO_CAP);
  }
}

const NO_CAP: BudgetAvailability = { tokens: null, costMicroUsd: null };

function least(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}
