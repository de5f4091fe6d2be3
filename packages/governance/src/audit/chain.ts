import { AgentryError } from "@agentry/core";
import { canonicalJson } from "../canonical-json.js";
import { macEquals, sha256Hex, type AuditKey, type AuditKeyring } from "./audit-key.js";
import { GENESIS_HASH, type AuditEntry } from "./entries.js";

/**
 * The link of an entry: HMAC-SHA256 with `key` when given, else plain SHA-256, over the entry's
 * canonical JSON without `hash` (so `seq`, `prevHash` and `kid` are covered).
 */
export function entryHash(entry: Omit<AuditEntry, "hash"> & { hash?: string }, key?: AuditKey): string {
  const { hash: _hash, ...rest } = entry;
  const canonical = canonicalJson(rest);
  return key ? key.macEntry(canonical) : sha256Hex(canonical);
}

/** Why an entry broke the chain. */
export type ChainBreak =
  /** Not valid JSON, or not an entry. */
  | "malformed"
  /** Its seq is not the previous seq + 1 (an entry deleted, inserted or moved). */
  | "seq-gap"
  /** Its storage id does not match its seq (entries moved between ids; an entry stored whole). */
  | "id-mismatch"
  /** Its prevHash is not the previous entry's hash (an entry stored whole, or an export line). */
  | "prev-mismatch"
  /**
   * Its content does not hash (or, with a key, MAC) to its hash: edited or forged, or, for an
   * entry stored without its seq and prevHash (they are the stream's), moved or not linked to the
   * entry before it.
   */
  | "hash-mismatch"
  /** A key is configured but this entry carries no MAC and no anchor covers it (forged or re-hashed). */
  | "unauthenticated"
  /** Its MAC names a key that is not configured (a wrong key, or a retired key not listed). */
  | "unknown-key"
  /** The chain's recorded head is not the last entry (entries removed from the end). */
  | "head-mismatch"
  /** Entries sit beyond the recorded head (written behind the log's back). */
  | "beyond-head"
  /** An anchored seq now holds a different entry (replaced, reordered or re-hashed). */
  | "anchor-mismatch"
  /** An anchor covers entries the log no longer has (truncated, or the whole log deleted). */
  | "anchor-beyond-head"
  /** An anchor line that fails its own MAC or cannot be read (a tampered anchors file). */
  | "bad-anchor"
  /**
   * The point the chain was archived and trimmed through does not hold: entries remain at or
   * below it, or no archive anchor records it (entries dropped without being archived).
   */
  | "base-mismatch";

/** A checkpoint the chain must still contain: entry `seq` with `hash`. */
export interface AnchorPoint {
  seq: number;
  hash: string;
  /** Written by `audit archive`: the chain may be trimmed through this point. */
  archived?: boolean;
  /** Names the anchor in a failure (`anchors line 3, 2025-01-01T00:00:00.000Z`). */
  label: string;
}

/** Result of verifying a chain. */
export type VerifyResult =
  | {
      ok: true;
      count: number;
      lastSeq: number;
      lastHash: string;
      /**
       * True when a key was configured and every entry verified either by its MAC or through an
       * anchor covering it; false in unauthenticated mode (plain links only).
       */
      authenticated: boolean;
      /** Entries whose MAC could not be checked because no key was configured. */
      unchecked: number;
      /** Anchors the chain was checked against. */
      anchors: number;
    }
  | { ok: false; count: number; firstBad: { seq: number; id: string; reason: ChainBreak; detail?: string } };

/** What a {@link ChainVerifier} checks beyond the links. */
export interface ChainVerifierOptions {
  /** Keys entries are authenticated with. @defaultValue none (unauthenticated mode) */
  keys?: AuditKeyring;
  /** Checkpoints the chain must contain. @defaultValue none */
  anchors?: readonly AnchorPoint[];
  /**
   * Accept entries without a MAC until the first one with a MAC (the log's history from before
   * a key was configured), for the first anchor, which then vouches for them. @defaultValue false
   */
  acceptLegacyPrefix?: boolean;
}

/**
 * Verifies entries one at a time, in order. `start` is the `{seq, hash}` before the first entry
 * (genesis by default); `"first"` trusts the first entry's prevHash (a partial export).
 *
 * With a key configured, an entry without a MAC is accepted only when an anchor at or after it
 * vouches for it (its hash is bound into the anchored hash by the links); anything else is a
 * forgery or a re-hash by someone without the key.
 */
export class ChainVerifier {
  private prevSeq: number;
  private prevHash: string | undefined;
  private readonly keys: AuditKeyring | undefined;
  private readonly anchors = new Map<number, AnchorPoint[]>();
  private readonly anchoredUpTo: number;
  private legacyPrefix: boolean;
  private anchorsChecked = 0;
  private unchecked = 0;
  count = 0;
  bad: Extract<VerifyResult, { ok: false }>["firstBad"] | undefined;

  constructor(
    start: { seq: number; hash: string } | "first" = { seq: 0, hash: GENESIS_HASH },
    options: ChainVerifierOptions = {},
  ) {
    this.prevSeq = start === "first" ? Number.NaN : start.seq;
    this.prevHash = start === "first" ? undefined : start.hash;
    this.keys = options.keys;
    this.legacyPrefix = options.acceptLegacyPrefix === true;
    let upTo = 0;
    for (const a of options.anchors ?? []) {
      this.anchors.set(a.seq, [...(this.anchors.get(a.seq) ?? []), a]);
      upTo = Math.max(upTo, a.seq);
    }
    this.anchoredUpTo = upTo;
    // Anchors at or before the starting point cannot be checked here, except the start itself.
    if (start !== "first") this.checkAnchors(start.seq, start.hash, "");
  }

  /** The hash of the last entry checked (or of the start); undefined before a partial export's first. */
  get lastHash(): string | undefined {
    return this.prevHash;
  }

  /** Checks the next entry; false (and `bad` set) once the chain is broken. */
  push(raw: string, id: string, expectedId?: string): boolean {
    if (this.bad) return false;
    const expectSeq = Number.isNaN(this.prevSeq) ? undefined : this.prevSeq + 1;
    let entry: AuditEntry;
    try {
      entry = JSON.parse(raw) as AuditEntry;
      if (
        typeof entry !== "object" ||
        entry === null ||
        typeof entry.seq !== "number" ||
        typeof entry.hash !== "string"
      )
        throw new AgentryError("INVALID_INPUT", "not an entry");
      if (entry.kid !== undefined && typeof entry.kid !== "string")
        throw new AgentryError("INVALID_INPUT", "kid is not a string");
    } catch (err) {
      return this.fail("malformed", expectSeq ?? -1, id, (err as Error).message);
    }
    if (expectSeq !== undefined && entry.seq !== expectSeq)
      return this.fail("seq-gap", expectSeq, id, `found seq ${entry.seq}`);
    if (expectedId !== undefined && id !== expectedId)
      return this.fail("id-mismatch", entry.seq, id, `expected id ${expectedId}`);
    if (this.prevHash !== undefined && entry.prevHash !== this.prevHash)
      return this.fail("prev-mismatch", entry.seq, id);
    if (entry.kid === undefined) {
      if (!macEquals(entryHash(entry), entry.hash)) return this.fail("hash-mismatch", entry.seq, id);
      if (this.keys?.authenticated) {
        if (entry.seq > this.anchoredUpTo && !this.legacyPrefix) {
          return this.fail(
            "unauthenticated",
            entry.seq,
            id,
            "no MAC although AGENTRY_AUDIT_KEY is set, and no anchor covers it",
          );
        }
      }
    } else {
      this.legacyPrefix = false;
      const key = this.keys?.get(entry.kid);
      if (key) {
        if (!macEquals(entryHash(entry, key), entry.hash))
          return this.fail("hash-mismatch", entry.seq, id, "MAC does not match");
      } else if (this.keys?.authenticated) {
        return this.fail("unknown-key", entry.seq, id, `key id ${entry.kid} is not configured`);
      } else {
        this.unchecked += 1;
      }
    }
    this.prevSeq = entry.seq;
    this.prevHash = entry.hash;
    this.count += 1;
    return this.checkAnchors(entry.seq, entry.hash, id);
  }

  private checkAnchors(seq: number, hash: string, id: string): boolean {
    for (const a of this.anchors.get(seq) ?? []) {
      if (!macEquals(a.hash, hash))
        return this.fail("anchor-mismatch", seq, id, `${a.label} recorded a different entry at seq ${seq}`);
      this.anchorsChecked += 1;
    }
    return true;
  }

  private fail(reason: ChainBreak, seq: number, id: string, detail?: string): false {
    this.bad = { seq, id, reason, ...(detail ? { detail } : {}) };
    return false;
  }

  /**
   * The result so far. `head` (the recorded chain head) is checked against the last entry, and
   * every anchor must lie within the entries seen.
   */
  result(head?: { seq: number; hash: string }): VerifyResult {
    if (this.bad) return { ok: false, count: this.count, firstBad: this.bad };
    const lastSeq = Number.isNaN(this.prevSeq) ? 0 : this.prevSeq;
    const lastHash = this.prevHash ?? GENESIS_HASH;
    if (head && (head.seq !== lastSeq || head.hash !== lastHash)) {
      return {
        ok: false,
        count: this.count,
        firstBad: {
          seq: lastSeq + 1,
          id: "",
          reason: "head-mismatch",
          detail: `head is seq ${head.seq}, last entry is seq ${lastSeq}`,
        },
      };
    }
    const beyond = [...this.anchors.values()]
      .flat()
      .filter((a) => a.seq > lastSeq)
      .sort((a, b) => a.seq - b.seq)[0];
    if (beyond) {
      return {
        ok: false,
        count: this.count,
        firstBad: {
          seq: beyond.seq,
          id: "",
          reason: "anchor-beyond-head",
          detail: `${beyond.label} covers seq ${beyond.seq} but the log ends at seq ${lastSeq}: entries were truncated or deleted`,
        },
      };
    }
    return {
      ok: true,
      count: this.count,
      lastSeq,
      lastHash,
      authenticated: this.keys?.authenticated === true,
      unchecked: this.unchecked,
      anchors: this.anchorsChecked,
    };
  }
}
