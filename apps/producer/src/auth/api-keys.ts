import { createHash } from "node:crypto";
import { AgentryError, TENANT_ID_RULE, isTenantId } from "@agentry/core";

/** What an API key grants: the tenant every request with it acts for. */
export interface ApiKeyGrant {
  tenant: string;
  /** A name for logs (the key itself is never logged). */
  name: string;
  /** Admin keys may change jobs in Bull Board; other keys see it read-only. @defaultValue false */
  admin?: boolean;
}

/** API key → grant. */
export type ApiKeys = Map<string, ApiKeyGrant>;

/** The caller a request was authenticated as. */
export interface Principal {
  tenant: string;
  name: string;
  admin: boolean;
  /** Set when the request carried an events token instead of a key: the one task it may read. */
  taskId?: string;
}

const KEY = /^[^\s,=#]{1,512}$/;

/**
 * Parses API keys from text: `AGENTRY_API_KEYS`, or the contents of `AGENTRY_API_KEYS_FILE`.
 *
 * - Lines or comma-separated entries `key=tenant`; `key=tenant+admin` marks an admin key
 *   (`+` cannot occur in a tenant id). Blank lines and `#` comments are skipped.
 * - Or JSON: `{"<key>": "<tenant>" | {"tenant", "name"?, "admin"?}}` or
 *   `[{"key", "tenant", "name"?, "admin"?}]`.
 *
 * Throws `INVALID_CONFIG` naming the bad entry (never printing a key).
 */
export function parseApiKeys(text: string, source = "API keys"): ApiKeys {
  const trimmed = text.trim();
  const keys: ApiKeys = new Map();
  const add = (key: string, tenant: unknown, name: unknown, admin: unknown, where: string) => {
    if (!KEY.test(key))
      throw new AgentryError(
        "INVALID_CONFIG",
        `${source}: ${where}: a key must be 1-512 characters without spaces, ',', '=' or '#'`,
      );
    if (!isTenantId(tenant)) {
      throw new AgentryError("INVALID_CONFIG", `${source}: ${where}: tenant must be ${TENANT_ID_RULE}`);
    }
    if (keys.has(key)) throw new AgentryError("INVALID_CONFIG", `${source}: ${where}: duplicate key`);
    keys.set(key, {
      tenant,
      name: typeof name === "string" && name ? name : defaultName(tenant, key),
      admin: admin === true,
    });
  };
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    let json: unknown;
    try {
      json = JSON.parse(trimmed);
    } catch (err) {
      throw new AgentryError("INVALID_CONFIG", `${source}: not valid JSON`, { cause: err });
    }
    if (Array.isArray(json)) {
      json.forEach((entry: unknown, i) => {
        const e = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
        add(typeof e["key"] === "string" ? e["key"] : "", e["tenant"], e["name"], e["admin"], `entry ${i}`);
      });
    } else {
      Object.entries(json as Record<string, unknown>).forEach(([key, value], i) => {
        if (typeof value === "string") add(key, value, undefined, false, `entry ${i}`);
        else {
          const e = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
          add(key, e["tenant"], e["name"], e["admin"], `entry ${i}`);
        }
      });
    }
    return keys;
  }
  const entries = trimmed
    .split(/[\n,]/)
    .map((l) => l.replace(/#.*$/, "").trim())
    .filter((l) => l.length > 0);
  entries.forEach((entry, i) => {
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new AgentryError("INVALID_CONFIG", `${source}: entry ${i}: expected key=tenant`);
    const key = entry.slice(0, eq).trim();
    let tenant = entry.slice(eq + 1).trim();
    const admin = tenant.endsWith("+admin");
    if (admin) tenant = tenant.slice(0, -"+admin".length);
    add(key, tenant, undefined, admin, `entry ${i}`);
  });
  return keys;
}

function defaultName(tenant: string, key: string): string {
  return `${tenant}#${digest(key).slice(0, 8)}`;
}

function digest(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/**
 * Looks API keys up by their SHA-256 digest, so the lookup time says nothing about how much of a
 * guessed key matched.
 */
export class ApiKeyAuthenticator {
  private readonly byDigest = new Map<string, Principal>();

  constructor(keys: ApiKeys) {
    for (const [key, grant] of keys)
      this.byDigest.set(digest(key), { tenant: grant.tenant, name: grant.name, admin: grant.admin ?? false });
  }

  /** The principal of a presented key, or undefined. */
  authenticate(key: string | undefined): Principal | undefined {
    if (!key) return undefined;
    return this.byDigest.get(digest(key));
  }

  get size(): number {
    return this.byDigest.size;
  }
}
