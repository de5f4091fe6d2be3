import { keySpace } from "@agentry/core";
import type { BudgetScope } from "./scope.js";

/**
 * Every budget key, built from one prefix. With a hash-tagged prefix (`{agentry}`) all of
 * them share one Redis Cluster slot, which the multi-key Lua scripts require.
 */
export interface BudgetKeys {
  limit(scope: BudgetScope): string;
  /**
   * Hash `usedTokens usedCost resTokens resCost` of one scope in one period, and `k`: how
   * `p` when its period's expiry is set (or it has none) and its scope listed (reserve-budget.lua),
   * none on an accounting-only hash, which expires.
   */
  usage(scope: BudgetScope, period: string): string;
  reservation(id: string): string;
  /** Marker left after settle / release / reap so that they stay idempotent. */
  done(id: string): string;
  /** Sorted set: reservation id → lease expiry (epoch ms). */
  readonly leases: string;
  /** Set of every scope with a limit or with tracked usage. */
  readonly scopes: string;
}

export function budgetKeys(prefix: string): BudgetKeys {
  const ks = keySpace(prefix);
  return {
    limit: (scope) => ks.key("budget", "limit", scope),
    usage: (scope, period) => ks.key("budget", "usage", scope, period),
    reservation: (id) => ks.key("budget", "res", id),
    done: (id) => ks.key("budget", "done", id),
    leases: ks.key("budget", "leases"),
    scopes: ks.key("budget", "scopes"),
  };
}
