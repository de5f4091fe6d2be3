/** What replaces a redacted value. */
export const REDACTED = "[redacted]";

/** Key names (compared lower-case, without `_`/`-`) whose values never reach the audit log. */
const SECRET_KEYS = new Set([
  "apikey",
  "xapikey",
  "authorization",
  "proxyauthorization",
  "privatekey",
  "password",
  "passwd",
  "passphrase",
  "token",
  "secret",
  "cookie",
  "setcookie",
  "credentials",
]);
const SECRET_SUFFIXES = ["apikey", "password", "secret", "privatekey", "token", "accesskey"];

function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, "");
  return SECRET_KEYS.has(k) || SECRET_SUFFIXES.some((s) => k.endsWith(s));
}

/**
 * A deep copy of `value` with secrets replaced by `[redacted]`: any key named like a credential
 * (apiKey, authorization, privateKey, password, token, secret, `*_token`, `clientSecret`...) at
 * any depth, plus the dotted `paths` given (`data.input.ssn`; `*` matches any one segment).
 */
export function redactSecrets<T>(value: T, paths: readonly string[] = []): T {
  const split = paths.map((p) => p.split("."));
  return walk(value, [], split) as T;
}

function walk(value: unknown, at: string[], paths: string[][]): unknown {
  if (value === null || typeof value !== "object") return value;
  // No dotted paths (the usual case): only key names matter, so no path is built per member.
  if (paths.length === 0) return walkKeys(value);
  if (Array.isArray(value))
    return value.map((v, i) =>
      matches(paths, [...at, String(i)]) ? REDACTED : walk(v, [...at, String(i)], paths),
    );
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const here = [...at, k];
    out[k] = v !== undefined && (isSecretKey(k) || matches(paths, here)) ? REDACTED : walk(v, here, paths);
  }
  return out;
}

function walkKeys(value: object): unknown {
  if (Array.isArray(value))
    return value.map((v: unknown) => (v === null || typeof v !== "object" ? v : walkKeys(v)));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] =
      v !== undefined && isSecretKey(k) ? REDACTED : v === null || typeof v !== "object" ? v : walkKeys(v);
  }
  return out;
}

function matches(paths: string[][], at: string[]): boolean {
  return paths.some((p) => p.length === at.length && p.every((seg, i) => seg === "*" || seg === at[i]));
}
