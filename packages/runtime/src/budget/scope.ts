import { AgentryError } from "@agentry/core";

/**
 * Who a budget belongs to: `global` (shared by everything), `tenant:<t>`, or one user or session
 * of a tenant, `tenant:<t>:user:<u>` / `tenant:<t>:session:<s>` (the names `tenantOwnedId` of
 * @agentry/core builds), so the same user or session id in two tenants is two budgets. Tenant ids
 * follow the tenant alphabet (no `:`); user and session ids are 1–200 printable characters without
 * spaces or braces (braces would interfere with Redis Cluster hash tags).
 */
export type BudgetScope = "global" | `tenant:${string}`;

/** Every kind of scope, widest first. */
export const BUDGET_SCOPE_KINDS = ["global", "tenant", "user", "session"] as const;

/** What a scope is the budget of. */
export type BudgetScopeKind = (typeof BUDGET_SCOPE_KINDS)[number];

const SCOPE_RE = /^(?:global|tenant:[A-Za-z0-9_.@-]{1,200}(?::(?:user|session):[^\s{}\p{Cc}]{1,200})?)$/u;
const LEGACY_RE = /^(user|session):(.*)$/su;

/** True when `s` is a well-formed {@link BudgetScope}. */
export function isBudgetScope(s: unknown): s is BudgetScope {
  return typeof s === "string" && SCOPE_RE.test(s);
}

/** The kind of a well-formed scope. */
export function budgetScopeKind(scope: BudgetScope): BudgetScopeKind {
  if (scope === "global") return "global";
  const kind = /^tenant:[^:]+:(user|session):/.exec(scope)?.[1];
  return kind === "user" || kind === "session" ? kind : "tenant";
}

/**
 * Why `s` is not a scope, in words a user can act on. The scope forms from before tenancy
 * (`user:<u>`, `session:<s>`) are named with their replacement.
 */
export function scopeSyntaxHelp(s: string): string {
  const legacy = LEGACY_RE.exec(s);
  if (legacy) {
    return `"${s}" is no longer a budget scope: users and sessions belong to a tenant, write tenant:<tenant>:${legacy[1]}:${legacy[2] || "<id>"}`;
  }
  return `Invalid budget scope "${s}": expected global, tenant:<tenant>, tenant:<tenant>:user:<id> or tenant:<tenant>:session:<id>`;
}

/**
 * Parses scope text such as `tenant:acme` or `tenant:acme:user:bob`.
 * @throws AgentryError `INVALID_INPUT` when the text is not a scope (the old `user:` / `session:`
 * forms included; the message names the new form).
 */
export function parseScope(s: string): BudgetScope {
  if (isBudgetScope(s)) return s;
  throw new AgentryError("INVALID_INPUT", scopeSyntaxHelp(s), { details: { scope: s } });
}
