import { AgentryError } from "@agentry/core";

/**
 * Who a budget belongs to. `global` is shared by everything; the others name one tenant,
 * user or session. Ids are 1–200 printable characters without spaces or braces
 * (braces would interfere with Redis Cluster hash tags).
 */
export type BudgetScope = "global" | `tenant:${string}` | `user:${string}` | `session:${string}`;

const SCOPE_RE = /^(?:global|(?:tenant|user|session):[^\s{}\p{Cc}]{1,200})$/u;

/** True when `s` is a well-formed {@link BudgetScope}. */
export function isBudgetScope(s: unknown): s is BudgetScope {
  return typeof s === "string" && SCOPE_RE.test(s);
}

/**
 * Parses scope text such as `tenant:acme`.
 * @throws AgentryError `INVALID_INPUT` when the text is not a scope.
 */
export function parseScope(s: string): BudgetScope {
  if (isBudgetScope(s)) return s;
  throw new AgentryError(
    "INVALID_INPUT",
    `Invalid budget scope "${s}": expected global, tenant:<id>, user:<id> or session:<id>`,
    { details: { scope: s } },
  );
}
