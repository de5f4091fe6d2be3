import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { Redis } from "ioredis";
import { AgentryError, keySpace, systemClock, type Clock } from "@agentry/core";
import { canonicalMembers, joinCanonicalMembers } from "../canonical-json.js";
import { luaScript } from "../redis-script.js";
import { ChainVerifier, type VerifyResult } from "./chain.js";
import { GENESIS_HASH, type AuditEntry, type AuditEntryInput } from "./entries.js";
import { redactSecrets } from "./redact.js";

const appendScript = luaScript("audit_append", new URL("./append-entry.lua", import.meta.url));

/** Options for {@link AuditLog}. */
export interface AuditLogOptions {
  redis: Redis;
  /** @defaultValue `agentry` */
  prefix?: string;
  /** Extra dotted paths to redact (`data.input.ssn`, `*` for one segment), on top of credential-like keys. */
  redactPaths?: string[];
  /** @defaultValue the system clock */
  clock?: Clock;
  /** Compare-and-append attempts before giving up with `AUDIT_FAILED`. @defaultValue 1000 */
  maxAttempts?: number;
  /** Most queued entries written by one script call. @defaultValue 128 */
  maxBatch?: number;
}

/** Where an appended entry landed. */
export interface AppendResult {
  seq: number;
  hash: string;
  /** Stream id (`<seq>-0`). */
  id: string;
}

const PAGE = 1_000;

/**
 * The shared, tamper-evident audit log: a Redis stream (`{prefix}:audit`, entry ids `<seq>-0`)
 * plus a head (`{prefix}:audit:head` = {seq, hash}). Each entry carries the previous entry's
 * hash and its own SHA-256 over its canonical JSON, and is appended by a compare-and-append
 * script, so entries from every worker form one chain. Secrets are redacted before hashing.
 * The stream is never trimmed.
 */
export class AuditLog {
  readonly redis: Redis;
  readonly streamKey: string;
  readonly headKey: string;
  private readonly redactPaths: string[];
  private readonly clock: Clock;
  private readonly maxAttempts: number;
  /** Last head this process saw: saves a read per append when this process is the only writer. */
  private head: { seq: number; hash: string } | undefined;
  private readonly queue: {
    input: AuditEntryInput;
    /** The redacted entry's members, each already canonical JSON (encoded once, at append). */
    body: Map<string, string>;
    resolve: (r: AppendResult) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private flushing = false;
  private readonly maxBatch: number;

  constructor(options: AuditLogOptions) {
    const keys = keySpace(options.prefix ?? "agentry");
    this.redis = options.redis;
    this.streamKey = keys.key("audit");
    this.headKey = keys.key("audit", "head");
    this.redactPaths = options.redactPaths ?? [];
    this.clock = options.clock ?? systemClock;
    this.maxAttempts = options.maxAttempts ?? 1_000;
    this.maxBatch = options.maxBatch ?? 128;
  }

  /**
   * Appends one entry (redacted) to the chain. Throws `AUDIT_FAILED` when it cannot be written
   * (Redis down, an unencodable value, endless contention): the caller must then fail the step,
   * since nothing may act unaudited. Appends from one instance are queued and written in batches
   * (one script call for all entries waiting), so writers in one process never race each other.
   */
  append(input: AuditEntryInput): Promise<AppendResult> {
    let body: Map<string, string>;
    try {
      // Encoding here fails this entry alone when it cannot be encoded.
      body = canonicalMembers(redactSecrets({ ...input, ts: input.ts ?? new Date(this.clock.now()).toISOString() }, this.redactPaths));
    } catch (err) {
      return Promise.reject(auditFailed(input, err));
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ input, body, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          const results = await this.appendBatch(batch.map((b) => b.body));
          batch.forEach((b, i) => b.resolve(results[i] as AppendResult));
        } catch (err) {
          this.head = undefined;
          batch.forEach((b) => b.reject(auditFailed(b.input, err)));
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private async appendBatch(bodies: Map<string, string>[]): Promise<AppendResult[]> {
    let head = this.head ?? (await this.readHead());
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const results: AppendResult[] = [];
      const args: (string | number)[] = [head.hash, head.seq + 1, GENESIS_HASH];
      let prev = head;
      for (const body of bodies) {
        // Byte for byte what entryHash and canonicalJson give for { ...body, seq, prevHash } and
        // then with its hash, without encoding the body's values again.
        const seq = prev.seq + 1;
        const members = new Map(body);
        members.delete("hash");
        members.set("seq", String(seq));
        members.set("prevHash", JSON.stringify(prev.hash));
        const hash = createHash("sha256").update(joinCanonicalMembers(members)).digest("hex");
        members.set("hash", JSON.stringify(hash));
        args.push(hash, joinCanonicalMembers(members));
        results.push({ seq, hash, id: `${seq}-0` });
        prev = { seq, hash };
      }
      const reply = (await appendScript(this.redis, [this.streamKey, this.headKey], args)) as [1, string] | [0, number, string];
      if (reply[0] === 1) {
        this.head = prev;
        return results;
      }
      head = { seq: Number(reply[1]), hash: reply[2] };
    }
    throw new Error(`chain head kept moving for ${this.maxAttempts} attempts`);
  }

  /** The chain head: the last entry's seq and hash (seq 0 and the genesis hash when empty). */
  async readHead(): Promise<{ seq: number; hash: string }> {
    const [seq, hash] = await this.redis.hmget(this.headKey, "seq", "hash");
    return { seq: Number(seq ?? 0), hash: hash ?? GENESIS_HASH };
  }

  /** Entries in order from `fromSeq` (default 1), at most `count` (default 100), optionally one task's. */
  async read(options: { fromSeq?: number; count?: number; taskId?: string } = {}): Promise<AuditEntry[]> {
    const count = options.count ?? 100;
    const out: AuditEntry[] = [];
    let start = `${Math.max(1, options.fromSeq ?? 1)}-0`;
    while (out.length < count) {
      const page = await this.redis.xrange(this.streamKey, start, "+", "COUNT", options.taskId ? PAGE : count - out.length);
      for (const [id, fields] of page) {
        const entry = parseFields(fields);
        if (entry && (!options.taskId || entry.taskId === options.taskId)) out.push(entry);
        if (out.length >= count) break;
        start = `(${id}`;
      }
      if (page.length === 0 || !options.taskId) break;
    }
    return out;
  }

  /** The last `n` entries (oldest first), optionally one task's. */
  async tail(n: number, options: { taskId?: string } = {}): Promise<AuditEntry[]> {
    const out: AuditEntry[] = [];
    let end = "+";
    while (out.length < n) {
      const page = await this.redis.xrevrange(this.streamKey, end, "-", "COUNT", options.taskId ? PAGE : n - out.length);
      for (const [id, fields] of page) {
        const entry = parseFields(fields);
        if (entry && (!options.taskId || entry.taskId === options.taskId)) out.push(entry);
        if (out.length >= n) break;
        end = `(${id}`;
      }
      if (page.length === 0 || !options.taskId) break;
    }
    return out.reverse();
  }

  /**
   * Walks the whole stream and checks every link: seq contiguous, stream id matching seq,
   * prevHash matching the previous hash, content matching its hash, and the head matching the
   * last entry. Names the first bad entry. Detects edited, deleted, inserted and reordered
   * entries; it cannot detect a rewrite of the whole chain from some entry onwards together
   * with the head (export and keep JSONL files elsewhere to anchor it).
   */
  async verify(): Promise<VerifyResult> {
    const verifier = new ChainVerifier();
    let start = "-";
    for (;;) {
      const page = await this.redis.xrange(this.streamKey, start, "+", "COUNT", PAGE);
      for (const [id, fields] of page) {
        const raw = fieldValue(fields);
        if (!verifier.push(raw ?? "", id, `${verifier.count + 1}-0`)) return verifier.result();
        start = `(${id}`;
      }
      if (page.length < PAGE) break;
    }
    return verifier.result(await this.readHead());
  }

  /**
   * Writes entries as JSONL (one entry per line, exactly as hashed) to `path` (the guide's
   * `storage_path`). Returns how many were written. A file starting at seq 1 verifies on its own
   * with {@link verifyJsonl}.
   */
  async exportJsonl(path: string, options: { fromSeq?: number } = {}): Promise<{ count: number; lastSeq: number }> {
    const file = await open(path, "w");
    let count = 0;
    let lastSeq = 0;
    try {
      let start = `${Math.max(1, options.fromSeq ?? 1)}-0`;
      for (;;) {
        const page = await this.redis.xrange(this.streamKey, start, "+", "COUNT", PAGE);
        let chunk = "";
        for (const [id, fields] of page) {
          chunk += `${fieldValue(fields) ?? ""}\n`;
          count += 1;
          lastSeq = Number(id.split("-")[0]);
          start = `(${id}`;
        }
        if (chunk) await file.write(chunk);
        if (page.length < PAGE) break;
      }
    } finally {
      await file.close();
    }
    return { count, lastSeq };
  }
}

function auditFailed(input: AuditEntryInput, err: unknown): AgentryError {
  return new AgentryError("AUDIT_FAILED", `audit append failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
    details: { type: input.type },
  });
}

/**
 * Verifies a JSONL export on its own. A file starting at seq 1 is checked from the genesis hash;
 * a partial export (starting later) trusts its first entry's prevHash.
 */
export async function verifyJsonl(path: string): Promise<VerifyResult> {
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Number.POSITIVE_INFINITY });
  let verifier: ChainVerifier | undefined;
  let lineNo = 0;
  for await (const line of lines) {
    lineNo += 1;
    if (line.trim() === "") continue;
    if (!verifier) {
      const first = safeSeq(line);
      verifier = new ChainVerifier(first === 1 ? undefined : "first");
    }
    if (!verifier.push(line, `line ${lineNo}`)) break;
  }
  return (verifier ?? new ChainVerifier()).result();
}

function safeSeq(line: string): number | undefined {
  try {
    return (JSON.parse(line) as { seq?: number }).seq;
  } catch {
    return undefined;
  }
}

function fieldValue(fields: string[]): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "e") return fields[i + 1];
  return undefined;
}

function parseFields(fields: string[]): AuditEntry | undefined {
  const raw = fieldValue(fields);
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as AuditEntry;
  } catch {
    return undefined;
  }
}
