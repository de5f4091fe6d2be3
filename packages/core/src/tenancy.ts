import { AgentryError } from "./errors/agentry-error.js";

/**
 * The alphabet of tenant ids: 1–200 letters, digits and `_ . @ -`. No `:`: a tenant id is one
 * segment of every tenant-qualified id, so it must not contain the separator (see
 * {@link tenantOwnedId}). Checked where tenants enter Agentry (API keys, job payloads).
 */
export const TENANT_ID_PATTERN = /^[A-Za-z0-9_.@-]{1,200}$/;

/** Human wording of {@link TENANT_ID_PATTERN}, for error messages. */
export const TENANT_ID_RULE = "1-200 of letters, digits and _ . @ - (no ':')";

/** True when `value` is a well-formed tenant id ({@link TENANT_ID_PATTERN}). */
export function isTenantId(value: unknown): value is string {
  return typeof value === "string" && TENANT_ID_PATTERN.test(value);
}

/**
 * Kinds of resources a tenant owns under an id its callers choose (or Agentry generates per
 * task). Closed, and none contains `:`, so the kind segment of a qualified id is unambiguous.
 */
export type TenantOwnedKind = "user" | "session" | "task";

const KINDS: ReadonlySet<string> = new Set<TenantOwnedKind>(["user", "session", "task"]);

/** `tenant:<tenant>`: the tenant itself as a scope (budgets, rate caps). Throws like {@link tenantOwnedId}. */
export function tenantScope(tenant: string): `tenant:${string}` {
  return `tenant:${requireTenant(tenant)}`;
}

/**
 * The one way to name something a tenant owns: `tenant:<tenant>:<kind>:<id>`, e.g.
 * `tenant:acme:session:s1`. Every tenant-owned key, namespace and budget scope is built from it,
 * so a `sessionId` or `userId` means nothing outside its tenant.
 *
 * Injective: the tenant contains no `:` (checked here, `INVALID_INPUT` otherwise), so the first
 * `:` after it ends it; the kind is from a closed set without `:`; the id is the rest, verbatim.
 * Tenant `a:b` with session `c` can therefore never meet tenant `a` with session `b:c`.
 */
export function tenantOwnedId(tenant: string, kind: TenantOwnedKind, id: string): `tenant:${string}` {
  if (!KINDS.has(kind))
    throw new AgentryError("INVALID_INPUT", `Unknown tenant-owned kind "${String(kind)}"`);
  if (typeof id !== "string" || id.length === 0) {
    throw new AgentryError("INVALID_INPUT", `${kind} id must be a non-empty string`, {
      details: { field: kind },
    });
  }
  return `tenant:${requireTenant(tenant)}:${kind}:${id}`;
}

function requireTenant(tenant: string): string {
  if (isTenantId(tenant)) return tenant;
  throw new AgentryError(
    "INVALID_INPUT",
    `Invalid tenant id "${String(tenant)}": expected ${TENANT_ID_RULE}`,
    {
      details: { field: "tenant" },
    },
  );
}
