import { createHash } from "node:crypto";
import { canonicalJson } from "../canonical-json.js";
import { GENESIS_HASH, type AuditEntry } from "./entries.js";

/** SHA-256 (hex) of an entry's canonical JSON, `hash` left out. */
export function entryHash(entry: Omit<AuditEntry, "hash"> & { hash?: string }): string {
  const { hash: _hash, ...rest } = entry;
  return createHash("sha256").update(canonicalJson(rest)).digest("hex");
}

/** Why an entry broke the chain. */
export type ChainBreak =
  /** Not valid JSON, or not an entry. */
  | "malformed"
  /** Its seq is not the previous seq + 1 (an entry deleted, inserted or moved). */
  | "seq-gap"
  /** Its storage id does not match its seq (entries moved between ids). */
  | "id-mismatch"
  /** Its prevHash is not the previous entry's hash. */
  | "prev-mismatch"
  /** Its content does not hash to its hash (edited). */
  | "hash-mismatch"
  /** The chain's recorded head is not the last entry (entries removed from the end). */
  | "head-mismatch";

/** Result of verifying a chain. */
export type VerifyResult =
  | { ok: true; count: number; lastSeq: number; lastHash: string }
  | { ok: false; count: number; firstBad: { seq: number; id: string; reason: ChainBreak; detail?: string } };

/**
 * Verifies entries one at a time, in order. `anchor` is the `{seq, hash}` before the first entry
 * (genesis by default); `"first"` trusts the first entry's prevHash (a partial export).
 */
export class ChainVerifier {
  private prevSeq: number;
  private prevHash: string | undefined;
  count = 0;
  bad: Extract<VerifyResult, { ok: false }>["firstBad"] | undefined;

  constructor(anchor: { seq: number; hash: string } | "first" = { seq: 0, hash: GENESIS_HASH }) {
    this.prevSeq = anchor === "first" ? Number.NaN : anchor.seq;
    this.prevHash = anchor === "first" ? undefined : anchor.hash;
  }

  /** Checks the next entry; false (and `bad` set) once the chain is broken. */
  push(raw: string, id: string, expectedId?: string): boolean {
    if (this.bad) return false;
    const expectSeq = Number.isNaN(this.prevSeq) ? undefined : this.prevSeq + 1;
    const fail = (reason: ChainBreak, seq: number, detail?: string) => {
      this.bad = { seq, id, reason, ...(detail ? { detail } : {}) };
      return false;
    };
    let entry: AuditEntry;
    try {
      entry = JSON.parse(raw) as AuditEntry;
      if (typeof entry !== "object" || entry === null || typeof entry.seq !== "number" || typeof entry.hash !== "string") throw new Error("not an entry");
    } catch (err) {
      return fail("malformed", expectSeq ?? -1, (err as Error).message);
    }
    if (expectSeq !== undefined && entry.seq !== expectSeq) return fail("seq-gap", expectSeq, `found seq ${entry.seq}`);
    if (expectedId !== undefined && id !== expectedId) return fail("id-mismatch", entry.seq, `expected id ${expectedId}`);
    if (this.prevHash !== undefined && entry.prevHash !== this.prevHash) return fail("prev-mismatch", entry.seq);
    if (entryHash(entry) !== entry.hash) return fail("hash-mismatch", entry.seq);
    this.prevSeq = entry.seq;
    this.prevHash = entry.hash;
    this.count += 1;
    return true;
  }

  /** The result so far; `head` (the recorded chain head) is checked against the last entry. */
  result(head?: { seq: number; hash: string }): VerifyResult {
    if (this.bad) return { ok: false, count: this.count, firstBad: this.bad };
    const lastSeq = Number.isNaN(this.prevSeq) ? 0 : this.prevSeq;
    const lastHash = this.prevHash ?? GENESIS_HASH;
    if (head && (head.seq !== lastSeq || head.hash !== lastHash)) {
      return {
        ok: false,
        count: this.count,
        firstBad: { seq: lastSeq + 1, id: "", reason: "head-mismatch", detail: `head is seq ${head.seq}, last entry is seq ${lastSeq}` },
      };
    }
    return { ok: true, count: this.count, lastSeq, lastHash };
  }
}
