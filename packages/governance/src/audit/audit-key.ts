import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { AgentryError } from "@agentry/core";

/** Shortest accepted audit key, as `AGENTRY_AUDIT_KEY` requires. */
export const MIN_AUDIT_KEY_LENGTH = 32;

/**
 * One audit secret, split into purpose-bound subkeys so that a MAC made for one purpose (an
 * entry, an anchor line) can never be replayed as the other, and identified by `kid`, an HMAC
 * of the secret that reveals nothing about it and tells a verifier which key an entry needs.
 */
export interface AuditKey {
  /** 16 hex characters naming the key (stored in every authenticated entry and anchor). */
  readonly kid: string;
  /** HMAC-SHA256 (hex) of an entry's canonical JSON (`hash` left out; `prevHash` and `seq` in). */
  macEntry(canonical: string): string;
  /** HMAC-SHA256 (hex) of an anchor line's canonical JSON (`mac` left out). */
  macAnchor(canonical: string): string;
}

function deriveKey(secret: string): AuditKey {
  if (secret.length < MIN_AUDIT_KEY_LENGTH) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `an audit key must be at least ${MIN_AUDIT_KEY_LENGTH} characters`,
    );
  }
  const sub = (purpose: string) =>
    createHmac("sha256", secret).update(`agentry/audit/${purpose}/v1`).digest();
  const entryKey = sub("entry");
  const anchorKey = sub("anchor");
  return {
    kid: sub("kid").toString("hex").slice(0, 16),
    macEntry: (canonical) => createHmac("sha256", entryKey).update(canonical).digest("hex"),
    macAnchor: (canonical) => createHmac("sha256", anchorKey).update(canonical).digest("hex"),
  };
}

/**
 * The keys an audit log writes and verifies with: the current one (writes, anchors, verifies)
 * and retired ones (verify only, for entries written before a rotation). Empty when no key is
 * configured: entries are then plain SHA-256 links, which catch accidental damage but not a
 * forger with Redis access.
 */
export class AuditKeyring {
  /** The key new entries and anchors are authenticated with; `undefined` in unauthenticated mode. */
  readonly current: AuditKey | undefined;
  readonly #byKid = new Map<string, AuditKey>();

  /** @throws `INVALID_CONFIG` when a key is shorter than {@link MIN_AUDIT_KEY_LENGTH}. */
  constructor(options: { key?: string | undefined; previousKeys?: readonly string[] | undefined } = {}) {
    this.current = options.key === undefined ? undefined : deriveKey(options.key);
    for (const k of [
      ...(this.current ? [this.current] : []),
      ...(options.previousKeys ?? []).map(deriveKey),
    ]) {
      if (!this.#byKid.has(k.kid)) this.#byKid.set(k.kid, k);
    }
  }

  /** True when at least one key is configured, so unauthenticated entries are suspect. */
  get authenticated(): boolean {
    return this.#byKid.size > 0;
  }

  /** The key with this id, if configured. */
  get(kid: string): AuditKey | undefined {
    return this.#byKid.get(kid);
  }
}

/** Plain SHA-256 (hex): the link of an unauthenticated entry. */
export function sha256Hex(canonical: string): string {
  return createHash("sha256").update(canonical).digest("hex");
}

/** Constant-time comparison of two hex MACs (different lengths are simply unequal). */
export function macEquals(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
