export { BudgetLedger, type BudgetLedgerOptions } from "./ledger.js";
export { budgetError } from "./budget-error.js";
export {
  parseScope,
  isBudgetScope,
  budgetScopeKind,
  BUDGET_SCOPE_KINDS,
  scopeSyntaxHelp,
  type BudgetScope,
  type BudgetScopeKind,
} from "./scope.js";
export { periodLabel } from "./period.js";
export type {
  BudgetAmount,
  BudgetAvailability,
  BudgetLimit,
  BudgetPeriod,
  BudgetRefusal,
  BudgetStats,
  ExpiredReservation,
  Reservation,
  ReserveResult,
  SettleResult,
} from "./types.js";
export {
  AllowanceLedger,
  mergeAllowanceHoldings,
  type AllowanceHolding,
  type AllowanceLedgerOptions,
  type CallLedger,
} from "./allowance.js";
export { ShardedBudget, SplitCallLedger, sessionOfScope } from "./sharded-budget.js";
