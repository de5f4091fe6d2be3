import type { AuditEntryInput } from "@agentry/core";

/** An entry as stored: the input (redacted) plus its place in the chain. */
export type AuditEntry = AuditEntryInput & {
  ts: string;
  /** 1, 2, 3... with no gaps. */
  seq: number;
  /** The previous entry's `hash` ({@link GENESIS_HASH} for the first). */
  prevHash: string;
  /**
   * The link: HMAC-SHA256 (hex) with the audit key `kid` names, or plain SHA-256 (hex) when the
   * writer had no key, over the canonical JSON of this entry without `hash`.
   */
  hash: string;
  /** Which audit key authenticated this entry; absent on unauthenticated (plain SHA-256) entries. */
  kid?: string;
};

/** The `prevHash` of entry 1. */
export const GENESIS_HASH = "0".repeat(64);
