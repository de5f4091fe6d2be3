/** What replaces a secret found in free text. */
export const REDACTED_TEXT = "[redacted]";

/**
 * Credentials that can turn up inside free text (a model's reasoning, a tool's output): API keys
 * of the common providers, bearer tokens, private key blocks, `password=...`-style pairs.
 */
const SECRET_PATTERNS: readonly RegExp[] = [
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
  /\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}/g,
  /\b(?:ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{20,}/g,
  /\bxox[abpr]-[A-Za-z0-9-]{10,}/g,
  /\bAKIA[0-9A-Z]{16}\b/g,
  /\bBearer\s+[A-Za-z0-9._~+/=-]{12,}/gi,
  /\b(password|passwd|secret|token|api[_-]?key)(\s*[:=]\s*)("[^"]*"|'[^']*'|\S+)/gi,
];

/**
 * Free text with credential-looking substrings replaced by `[redacted]`. Key-based redaction
 * cannot see a secret the model wrote into a sentence; this catches the common shapes.
 */
export function redactSecretText(text: string): string {
  let out = text;
  for (const pattern of SECRET_PATTERNS) {
    out = out.replace(pattern, (match: string, name?: string, sep?: string) =>
      typeof name === "string" && typeof sep === "string" && /[:=]/.test(sep)
        ? `${name}${sep}${REDACTED_TEXT}`
        : REDACTED_TEXT,
    );
  }
  return out;
}
