import { createReadStream } from "node:fs";
import { appendFile, open } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { Redis } from "ioredis";
import {
  AgentryError,
  isNoScriptError,
  MAX_SCRIPT_RELOADS,
  defineScripts,
  keySpace,
  MAX_AUDIT_LANES,
  systemClock,
  type AuditAppendOptions,
  type AuditEntryInput,
  type AuditHold,
  type AuditRider,
  type AuditSink,
  type Clock,
  type Fence,
} from "@agentry/core";
import { canonicalMembers, joinCanonicalMembers } from "../canonical-json.js";
import { anchorLine, anchorSetLine, readAnchors } from "./anchors.js";
import { AuditKeyring, sha256Hex } from "./audit-key.js";
import { ChainVerifier, type AnchorPoint, type VerifyResult } from "./chain.js";
import { GENESIS_HASH, type AuditEntry } from "./entries.js";
import { expandStored, idSeq, storedField, storedHash } from "./stored.js";
import { redactSecrets } from "./redact.js";

const scripts = defineScripts<{
  /** KEYS: stream, fence, then the batch's once keys; ARGV: see the script's header. */
  appendAuditEntries: (
    keys: string[],
    args: (string | number)[],
  ) => [1, string] | [0, number, string] | [2, ...(number | string)[]] | [3];
  /** KEYS: stream, head; ARGV: seq to trim through, its hash. */
  trimAudit: (
    keys: [stream: string, head: string],
    args: [seq: number, hash: string],
  ) => [1, number] | [0, string];
}>(import.meta.url, { appendAuditEntries: "./append-audit-entries.lua", trimAudit: "./trim-audit-2.lua" });

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
  /**
   * The audit secret (`AGENTRY_AUDIT_KEY`, at least 32 characters): entries are linked with
   * HMAC-SHA256 under it, so someone with Redis write access but without it cannot forge, edit
   * or re-hash an entry undetected. @defaultValue none: plain SHA-256 links (unauthenticated)
   */
  key?: string;
  /** Retired audit secrets, accepted when verifying entries written before a key rotation. @defaultValue none */
  previousKeys?: readonly string[];
  /** How long a `once` marker keeps a retried append from writing its entry again. @defaultValue 7 days */
  onceTtlMs?: number;
  /**
   * The chain's lane under `prefix` (`AGENTRY_AUDIT_LANES`): lane 0 is `<prefix>:audit` (with
   * `<prefix>:audit:head`), lane n > 0 is `<prefix>:audit:lane:<n>` (with `…:head`). Each worker
   * process writes its own lane (see `acquireAuditLane`), so processes do not race each
   * other for one head; `once` markers are shared by every lane. @defaultValue 0
   */
  lane?: number;
  /**
   * Called when an append finds the chain's head behind one this writer had seen (or at its seq
   * with another hash): entries after it are gone from Redis (Redis lost recent writes in a crash or restart, or someone rewound
   * or deleted the chain). The append goes on from the head as it is; `agentry audit verify
   * --anchors` tells which entries went missing. @defaultValue none
   */
  onRewound?: (rewind: AuditRewind) => void;
}

/** A chain head found behind the one a writer had seen (see {@link AuditLogOptions.onRewound}). */
export interface AuditRewind {
  stream: string;
  /** The head this writer had seen. */
  seen: { seq: number; hash: string };
  /** The head Redis holds now (seq 0 when the chain is gone). */
  found: { seq: number; hash: string };
}

/** Where an appended entry landed. */
export interface AppendResult {
  seq: number;
  hash: string;
  /** Stream id (`<seq>-0`). */
  id: string;
  /** True when a `once` append had already been written: `seq`, `hash` and `id` are that entry's. */
  duplicate: boolean;
  /**
   * True when the entry was held for its attempt's next step write (see {@link AuditLog.hold}):
   * it is not written yet, so `seq` is 0 and `hash` and `id` are empty.
   */
  held?: boolean;
}

/** What an append held for its attempt resolves to. */
const HELD: AppendResult = Object.freeze({ seq: 0, hash: "", id: "", duplicate: false, held: true });

/** The audit log's head and the stream's last id, read in one transaction. */
interface Snapshot {
  head: { seq: number; hash: string };
  /** The point the entries left in Redis start after (archived and trimmed through it); seq 0 when never trimmed. */
  base: { seq: number; hash: string };
  /** The first stream id's first part, 0 when the stream is empty. */
  bottomSeq: number;
  /** The last stream id's first part (the seq it claims), 0 when the stream is empty. */
  topSeq: number;
}

/** What `anchor` wrote. */
export interface AnchorResult {
  seq: number;
  hash: string;
  time: string;
  /** Entries verified since the previous anchor of this log in the file (all of them when none). */
  verified: number;
}

const PAGE = 1_000;

/**
 * The shared, tamper-evident audit log: a Redis stream (`{prefix}:audit`, entry ids `<seq>-0`)
 * plus a head (`{prefix}:audit:head` = {seq, hash}). Each entry carries the previous entry's
 * hash and its own link over its canonical JSON, and is appended by a compare-and-append
 * script, so entries from every worker form one chain. With a key the link is an HMAC that
 * only key holders can make; without one it is a plain SHA-256 (accidental damage only).
 * Secrets are redacted before hashing. The stream is trimmed only by {@link archiveTo}, through
 * a point written to an archive file and anchored first; the head then records that point.
 */
export class AuditLog implements AuditSink {
  readonly redis: Redis;
  /** The chain's lane under its prefix (0: `<prefix>:audit`). */
  readonly lane: number;
  readonly streamKey: string;
  readonly headKey: string;
  /** The keys this log writes and verifies with (empty: unauthenticated mode). */
  readonly keys: AuditKeyring;
  /** The key of a `once` marker (`<prefix>:audit:once:<once>`, shared by every lane). */
  readonly onceKey: (once: string) => string;
  private readonly redactPaths: string[];
  private readonly clock: Clock;
  private readonly maxAttempts: number;
  private readonly onRewound: ((rewind: AuditRewind) => void) | undefined;
  private readonly onceTtlSeconds: number;
  /** Last head this process saw: saves a read per append when this process is the only writer. */
  private head: { seq: number; hash: string } | undefined;
  private readonly queue: (QueuedEntry | QueuedCommit)[] = [];
  /** Entries held per attempt (fence key and token), see {@link hold}. */
  private readonly holds = new Map<string, HeldEntry[]>();
  private flushing = false;
  private readonly maxBatch: number;

  /** @throws `INVALID_CONFIG` when a key is shorter than 32 characters. */
  constructor(options: AuditLogOptions) {
    const keys = keySpace(options.prefix);
    const lane = options.lane ?? 0;
    if (!Number.isInteger(lane) || lane < 0 || lane >= MAX_AUDIT_LANES)
      throw new AgentryError(
        "INVALID_CONFIG",
        `an audit lane is a whole number from 0 to ${MAX_AUDIT_LANES - 1} (got ${lane})`,
      );
    this.redis = options.redis;
    this.lane = lane;
    this.onRewound = options.onRewound;
    this.streamKey = lane === 0 ? keys.key("audit") : keys.key("audit", "lane", String(lane));
    // append-audit-entries.lua finds the head the same way.
    this.headKey = `${this.streamKey}:head`;
    this.onceKey = (once) => keys.key("audit", "once", once);
    this.keys = new AuditKeyring({ key: options.key, previousKeys: options.previousKeys });
    this.redactPaths = options.redactPaths ?? [];
    this.clock = options.clock ?? systemClock;
    this.maxAttempts = options.maxAttempts ?? 1_000;
    this.maxBatch = options.maxBatch ?? 128;
    this.onceTtlSeconds = Math.max(1, Math.ceil((options.onceTtlMs ?? 7 * 24 * 3_600_000) / 1000));
  }

  /** True when entries are authenticated (a key is configured). */
  get authenticated(): boolean {
    return this.keys.current !== undefined;
  }

  /**
   * Appends one entry (redacted) to the chain. Throws `AUDIT_FAILED` when it cannot be written
   * (Redis down, an unencodable value, endless contention): the caller must then fail the step,
   * since nothing may act unaudited. Throws `LOCK_LOST` when `options.fence` no longer holds
   * (nothing written). Appends from one instance are queued and written in batches (one script
   * call for the entries waiting), so writers in one process never race each other. A batch
   * only groups entries under the same fence, so the fence holds or fails for each entry as if
   * it were appended alone; a `once` id is checked per entry (a duplicate is skipped, the rest
   * of its batch is written): its marker is `<prefix>:audit:once:<once>`, kept `onceTtlMs`, and
   * a repeated append returns the first write's place with `duplicate: true`.
   */
  append(input: AuditEntryInput, options: AuditAppendOptions = {}): Promise<AppendResult> {
    let body: Map<string, string>;
    try {
      if (options.once !== undefined && (options.once.length === 0 || options.once.length > 512)) {
        throw new AgentryError("INVALID_INPUT", "a once id must be 1 to 512 characters");
      }
      // Encoding here fails this entry alone when it cannot be encoded.
      body = canonicalMembers(
        redactSecrets(
          { ...input, ts: input.ts ?? new Date(this.clock.now()).toISOString() },
          this.redactPaths,
        ),
      );
    } catch (err) {
      return Promise.reject(auditFailed(input, err));
    }
    const held = options.fence ? this.holds.get(holdId(options.fence)) : undefined;
    if (held) {
      held.push({ input, body, once: options.once });
      return Promise.resolve(HELD);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ input, body, fence: options.fence, once: options.once, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  /**
   * Holds the appends fenced by `fence` (one task attempt's) until the attempt's next own write:
   * {@link AuditHold.commit} writes them and that write in one MULTI/EXEC, through this log's
   * queue (so appends of one process still never race each other for the head). The rider's
   * script checks that the head then holds the batch's last hash, so the entries and the write
   * land together or not at all. A held append resolves at once with `held: true`; `once` ids
   * are checked at the commit as for any append. Holding the same fence twice shares one hold.
   */
  hold(fence: Fence): AuditHold {
    const id = holdId(fence);
    const held = this.holds.get(id) ?? [];
    this.holds.set(id, held);
    return {
      get size() {
        return held.length;
      },
      commit: <T>(rider: AuditRider<T>) =>
        new Promise<T>((resolve, reject) => {
          this.queue.push({
            commit: true,
            fence,
            entries: held.splice(0),
            rider: rider as AuditRider<unknown>,
            resolve: resolve as (v: unknown) => void,
            reject,
          });
          if (!this.flushing) void this.flush();
        }),
      release: async () => {
        if (this.holds.get(id) === held) this.holds.delete(id);
        await Promise.all(
          held.splice(0).map((h) => this.append(h.input, { fence, ...(h.once ? { once: h.once } : {}) })),
        );
      },
    };
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const first = this.queue[0] as QueuedEntry | QueuedCommit;
        if ("commit" in first) {
          this.queue.shift();
          try {
            first.resolve(await this.commitWith(first));
          } catch (err) {
            if (!(AgentryError.isInstance(err) && err.code === "LOCK_LOST")) this.head = undefined;
            first.reject(err);
          }
          continue;
        }
        const batch = this.nextBatch();
        try {
          const results = await this.appendBatch(batch);
          batch.forEach((b, i) => b.resolve(results[i] as AppendResult));
        } catch (err) {
          if (AgentryError.isInstance(err) && err.code === "LOCK_LOST") {
            batch.forEach((b) =>
              b.reject(new AgentryError("LOCK_LOST", err.message, { details: { type: b.input.type } })),
            );
          } else {
            this.head = undefined;
            batch.forEach((b) => b.reject(auditFailed(b.input, err)));
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** The longest run from the queue's front under one fence, with no once id twice. */
  private nextBatch(): QueuedEntry[] {
    const first = this.queue[0] as QueuedEntry;
    const onces = new Set<string>();
    let n = 0;
    for (const q of this.queue) {
      if (
        n >= this.maxBatch ||
        "commit" in q ||
        q.fence?.key !== first.fence?.key ||
        q.fence?.token !== first.fence?.token
      )
        break;
      if (q.once !== undefined) {
        // A second append with the same id must see the first one's marker: next batch.
        if (onces.has(q.once)) break;
        onces.add(q.once);
      }
      n += 1;
    }
    return this.queue.splice(0, n) as QueuedEntry[];
  }

  /**
   * The rider's write on its own, with no head to check: nothing is held, or the entries it rode
   * with are already in the chain. A script the server lost is loaded and the write sent again.
   */
  private async riderAlone(rider: AuditRider<unknown>): Promise<unknown> {
    rider.define(this.redis);
    for (let reloads = 0; ; reloads++) {
      const pipeline = this.redis.pipeline();
      rider.queue(pipeline, undefined);
      const result = (await pipeline.exec())?.[0] ?? [new Error("no reply"), null];
      if (!isNoScriptError(result[0]) || reloads >= MAX_SCRIPT_RELOADS) return rider.reply(result);
      await rider.load(this.redis);
    }
  }

  /**
   * One held commit: the entries (a repeated once id counts once) and the rider in one
   * MULTI/EXEC, again with a fresh head while the head moves, without the duplicates once they
   * are known; with no entry left, the rider alone.
   */
  private async commitWith(item: QueuedCommit): Promise<unknown> {
    const onces = new Set<string>();
    let pending = item.entries.filter(
      (e) => e.once === undefined || (!onces.has(e.once) && !!onces.add(e.once)),
    );
    item.rider.define(this.redis);
    if (pending.length === 0) return this.riderAlone(item.rider);
    scripts.appendAuditEntries.defineOn(this.redis);
    let head = this.head ?? (await this.readHead());
    let reloads = 0;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const { keys, args, last } = this.encode(pending, head, item.fence);
      const tx = this.redis.multi();
      scripts.appendAuditEntries.queue(tx, keys, args);
      item.rider.queue(tx, { key: this.headKey, hash: last.hash });
      const replies = await tx.exec();
      if (!replies) throw new AgentryError("REDIS_UNAVAILABLE", "audit commit transaction was aborted");
      const [auditErr, auditReply] = replies[0] ?? [new Error("no reply"), null];
      const riderResult = replies[1] ?? [new Error("no reply"), null];
      // The server can lose its script cache while this connection stays open (a SCRIPT FLUSH,
      // a restart behind a proxy). Inside MULTI the client cannot resend a script, and the server
      // runs the rest of the transaction: load the scripts, then go on from what was written.
      if (isNoScriptError(auditErr) && reloads < MAX_SCRIPT_RELOADS) {
        // Nothing was appended, so the rider, finding the old head, wrote nothing: again, whole.
        reloads += 1;
        await Promise.all([scripts.appendAuditEntries.load(this.redis), item.rider.load(this.redis)]);
        attempt -= 1;
        continue;
      }
      if (auditErr) throw auditFailed(pending[0]?.input as AuditEntryInput, auditErr);
      const reply = auditReply as [1, string] | [0, number, string] | [2, ...(number | string)[]] | [3];
      if (reply[0] === 1) {
        this.head = last;
        // The entries are in the chain; the rider alone (no head check) writes its part.
        if (isNoScriptError(riderResult[0])) return this.riderAlone(item.rider);
        return item.rider.reply(riderResult);
      }
      if (reply[0] === 3) {
        throw new AgentryError(
          "LOCK_LOST",
          `audit append refused: ${item.fence.key} no longer holds this attempt's token`,
        );
      }
      if (reply[0] === 2) {
        const dup = new Set<number>();
        for (let r = 1; r + 1 < reply.length; r += 2) dup.add(Number(reply[r]));
        pending = pending.filter((_, i) => !dup.has(i));
        if (pending.length === 0) return this.commitWith({ ...item, entries: [] });
        continue;
      }
      head = this.movedHead(head, { seq: Number(reply[1]), hash: reply[2] || GENESIS_HASH });
    }
    throw new AgentryError("AUDIT_FAILED", `chain head kept moving for ${this.maxAttempts} attempts`);
  }

  /** The head an append found instead of `seen`; one behind it (or forked at it) is reported as a rewind. */
  private movedHead(
    seen: { seq: number; hash: string },
    found: { seq: number; hash: string },
  ): { seq: number; hash: string } {
    // Behind it, or at its seq with another hash (the entry seen was lost and another took its place).
    if (found.seq < seen.seq || (found.seq === seen.seq && found.hash !== seen.hash)) {
      try {
        this.onRewound?.({ stream: this.streamKey, seen, found });
      } catch {
        // A reporter's failure does not stop the append.
      }
    }
    return found;
  }

  /** The script's KEYS and ARGV for `entries` appended after `head`, and the head they leave. */
  private encode(
    entries: readonly { body: Map<string, string>; once: string | undefined }[],
    head: { seq: number; hash: string },
    fence: Fence | undefined,
  ): {
    keys: string[];
    args: (string | number)[];
    written: AppendResult[];
    last: { seq: number; hash: string };
  } {
    const key = this.keys.current;
    const keys = [this.streamKey, fence?.key ?? this.streamKey];
    const args: (string | number)[] = [
      fence?.token ?? "",
      head.hash,
      head.seq + 1,
      head.seq === 0 ? GENESIS_HASH : "",
      this.onceTtlSeconds,
    ];
    const written: AppendResult[] = [];
    let prev = head;
    for (const q of entries) {
      // Byte for byte what entryHash gives for { ...body, seq, prevHash, kid }, without encoding
      // the body's values again. Stored without seq, prevHash and hash (see stored.ts).
      const seq = prev.seq + 1;
      const members = new Map(q.body);
      for (const derived of ["hash", "kid", "seq", "prevHash"]) members.delete(derived);
      if (key) members.set("kid", JSON.stringify(key.kid));
      const stored = joinCanonicalMembers(members);
      members.set("seq", String(seq));
      members.set("prevHash", JSON.stringify(prev.hash));
      const canonical = joinCanonicalMembers(members);
      const hash = key ? key.macEntry(canonical) : sha256Hex(canonical);
      let onceIndex = 0;
      if (q.once !== undefined) {
        keys.push(this.onceKey(q.once));
        onceIndex = keys.length;
      }
      args.push(hash, stored, onceIndex);
      written.push({ seq, hash, id: `${seq}-0`, duplicate: false });
      prev = { seq, hash };
    }
    return { keys, args, written, last: prev };
  }

  private async appendBatch(batch: QueuedEntry[]): Promise<AppendResult[]> {
    const results: (AppendResult | undefined)[] = batch.map(() => undefined);
    let pending = batch.map((_, i) => i);
    let head = this.head ?? (await this.readHead());
    const fence = batch[0]?.fence;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const {
        keys,
        args,
        written,
        last: prev,
      } = this.encode(
        pending.map((i) => batch[i] as QueuedEntry),
        head,
        fence,
      );
      const reply = await scripts.appendAuditEntries(this.redis, keys, args);
      if (reply[0] === 1) {
        this.head = prev;
        pending.forEach((i, n) => (results[i] = written[n]));
        return results as AppendResult[];
      }
      if (reply[0] === 3) {
        throw new AgentryError(
          "LOCK_LOST",
          `audit append refused: ${fence?.key ?? "the fence"} no longer holds this attempt's token`,
        );
      }
      if (reply[0] === 2) {
        const dup = new Set<number>();
        for (let r = 1; r + 1 < reply.length; r += 2) {
          const i = pending[Number(reply[r])] as number;
          const [seq, hash] = String(reply[r + 1]).split(" ");
          results[i] = { seq: Number(seq), hash: hash ?? "", id: `${seq}-0`, duplicate: true };
          dup.add(i);
        }
        pending = pending.filter((i) => !dup.has(i));
        if (pending.length === 0) return results as AppendResult[];
        continue;
      }
      head = this.movedHead(head, { seq: Number(reply[1]), hash: reply[2] || GENESIS_HASH });
    }
    throw new AgentryError("AUDIT_FAILED", `chain head kept moving for ${this.maxAttempts} attempts`);
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
    // The hash of the entry before the next one read: its prevHash, which is not stored.
    let prev: string | undefined;
    while (out.length < count) {
      const page = await this.redis.xrange(
        this.streamKey,
        start,
        "+",
        "COUNT",
        options.taskId ? PAGE : count - out.length,
      );
      for (const [id, fields] of page) {
        prev ??= await this.hashBefore(idSeq(id));
        const entry = parseEntry(expandStored(id, fields, prev));
        prev = storedHash(fields) ?? "";
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
    // Newest first; an entry's prevHash is the hash of the one read after it (the one before it
    // in the stream), or, for the oldest, looked up.
    const picked: { id: string; fields: string[]; prev: string | undefined }[] = [];
    let waiting: (typeof picked)[number] | undefined;
    let end = "+";
    while (picked.length < n) {
      const page = await this.redis.xrevrange(
        this.streamKey,
        end,
        "-",
        "COUNT",
        options.taskId ? PAGE : n - picked.length + 1,
      );
      for (const [id, fields] of page) {
        if (waiting) waiting.prev = storedHash(fields) ?? "";
        waiting = undefined;
        if (picked.length >= n) break;
        if (!options.taskId || parseEntry(storedField(fields, "e") ?? "")?.taskId === options.taskId) {
          waiting = { id, fields, prev: undefined };
          picked.push(waiting);
        }
        end = `(${id}`;
      }
      if (page.length === 0 || !options.taskId) break;
    }
    if (waiting) waiting.prev = await this.hashBefore(idSeq(waiting.id));
    return picked
      .reverse()
      .map((p) => parseEntry(expandStored(p.id, p.fields, p.prev ?? "")))
      .filter((e): e is AuditEntry => e !== undefined);
  }

  /**
   * The hash of entry `seq − 1`, the prevHash of entry `seq` (which is not stored): the genesis
   * hash before entry 1, the archived base when the entry was trimmed, "" when it is missing.
   */
  private async hashBefore(seq: number): Promise<string> {
    if (seq <= 1) return GENESIS_HASH;
    const [before] = await this.redis.xrevrange(this.streamKey, `(${seq}-0`, "-", "COUNT", 1);
    if (before && idSeq(before[0]) === seq - 1) return storedHash(before[1]) ?? "";
    const [baseSeq, baseHash] = await this.redis.hmget(this.headKey, "baseSeq", "baseHash");
    return Number(baseSeq ?? 0) === seq - 1 && baseHash ? baseHash : "";
  }

  /**
   * The head and the stream's last id in one transaction: a consistent point to verify up to,
   * since every append moves both in one script.
   */
  private async snapshot(): Promise<Snapshot> {
    const replies = await this.redis
      .multi()
      .hmget(this.headKey, "seq", "hash", "baseSeq", "baseHash")
      .xrevrange(this.streamKey, "+", "-", "COUNT", 1)
      .xrange(this.streamKey, "-", "+", "COUNT", 1)
      .exec();
    if (!replies) throw new AgentryError("REDIS_UNAVAILABLE", "audit snapshot transaction was aborted");
    for (const [err] of replies) if (err) throw err;
    const [seq, hash, baseSeq, baseHash] = replies[0]?.[1] as (string | null)[];
    const top = replies[1]?.[1] as [string, string[]][];
    const bottom = replies[2]?.[1] as [string, string[]][];
    return {
      head: { seq: Number(seq ?? 0), hash: hash ?? GENESIS_HASH },
      base: { seq: Number(baseSeq ?? 0), hash: baseHash ?? GENESIS_HASH },
      topSeq: top[0] ? Number(top[0][0].split("-")[0]) : 0,
      bottomSeq: bottom[0] ? Number(bottom[0][0].split("-")[0]) : 0,
    };
  }

  /**
   * The failure when the recorded base does not hold: entries left at or below it, or, with
   * anchors, no archive anchor recording it. Undefined when it holds (or was never set).
   */
  private baseProblem(
    snap: Snapshot,
    anchors: readonly AnchorPoint[] | undefined,
  ): Extract<VerifyResult, { ok: false }> | undefined {
    const { base, bottomSeq } = snap;
    const fail = (detail: string): Extract<VerifyResult, { ok: false }> => ({
      ok: false,
      count: 0,
      firstBad: { seq: base.seq, id: "", reason: "base-mismatch", detail },
    });
    if (base.seq === 0) return undefined;
    if (bottomSeq !== 0 && bottomSeq <= base.seq)
      return fail(`the log is archived through seq ${base.seq} but still holds seq ${bottomSeq}`);
    if (anchors && !anchors.some((a) => a.archived && a.seq === base.seq && a.hash === base.hash))
      return fail(
        `the log was trimmed through seq ${base.seq}, which no archive anchor records: entries were dropped without being archived`,
      );
    return undefined;
  }

  /** Feeds entries with seq `from`..`to` (all sub-ids) to the verifier; false once it failed. */
  private async walk(verifier: ChainVerifier, from: number, to: number): Promise<boolean> {
    if (to < from) return true;
    let start = `${from}-0`;
    let expected = from;
    for (;;) {
      const page = await this.redis.xrange(this.streamKey, start, String(to), "COUNT", PAGE);
      for (const [id, fields] of page) {
        if (!verifier.push(expandStored(id, fields, verifier.lastHash ?? ""), id, `${expected}-0`))
          return false;
        expected += 1;
        start = `(${id}`;
      }
      if (page.length < PAGE) return true;
    }
  }

  /**
   * Verifies the chain as of one consistent snapshot: reads the head first, then walks the
   * entries up to it, so appends made meanwhile by other processes never cause a false failure.
   * Checks every link (seq contiguous, stream id matching seq, prevHash matching the previous
   * hash, content matching its HMAC or hash), the head matching the last entry, no entries
   * beyond the head, and every anchor given (the entry at each anchored seq still has the
   * anchored hash). Names the first problem.
   *
   * Without anchors it cannot see entries removed from the end together with a reset head, or
   * the whole log deleted: take anchors (`anchor`) and keep them outside Redis.
   */
  async verify(options: { anchors?: readonly AnchorPoint[] } = {}): Promise<VerifyResult> {
    const snap = await this.snapshot();
    const { head, topSeq, base } = snap;
    const problem = this.baseProblem(snap, options.anchors);
    if (problem) return problem;
    // An archived log starts after its base: the entries before it are in the archive file.
    const verifier = new ChainVerifier(base.seq === 0 ? undefined : base, {
      keys: this.keys,
      ...(options.anchors ? { anchors: options.anchors } : {}),
    });
    if (!(await this.walk(verifier, base.seq + 1, head.seq))) return verifier.result();
    const result = verifier.result(head);
    return result.ok && topSeq > head.seq ? this.beyondHead(result.count, head.seq, topSeq) : result;
  }

  /** The failure for entries past the head: written behind the log's back (an append moves both). */
  private async beyondHead(
    count: number,
    headSeq: number,
    topSeq: number,
  ): Promise<Extract<VerifyResult, { ok: false }>> {
    const [next] = await this.redis.xrange(
      this.streamKey,
      `(${headSeq}-18446744073709551615`,
      "+",
      "COUNT",
      1,
    );
    const detail = `the stream reaches seq ${topSeq} but the head is seq ${headSeq}`;
    return {
      ok: false,
      count,
      firstBad: { seq: headSeq + 1, id: next?.[0] ?? "", reason: "beyond-head", detail },
    };
  }

  /**
   * Verifies against an anchors file (see {@link anchor}). Fails when a line of the file fails
   * its MAC, when the file holds no anchor of this log, or when the log contradicts an anchor.
   * Throws when the file cannot be read.
   */
  async verifyWithAnchors(path: string): Promise<VerifyResult> {
    const file = await readAnchors(path, { stream: this.streamKey, keys: this.keys });
    if (!file.ok)
      return {
        ok: false,
        count: 0,
        firstBad: { seq: -1, id: `anchors line ${file.line}`, reason: "bad-anchor", detail: file.detail },
      };
    if (file.points.length === 0) {
      return {
        ok: false,
        count: 0,
        firstBad: {
          seq: -1,
          id: "",
          reason: "bad-anchor",
          detail: `no anchor of ${this.streamKey} in ${path}`,
        },
      };
    }
    return this.verify({ anchors: file.points });
  }

  /**
   * Appends one authenticated checkpoint of the current head (seq, hash, time) to the anchors
   * file at `path` (created when missing). Before vouching for the head it verifies the entries
   * written since this log's last anchor in the file (the whole chain on the first run, which
   * then also vouches for entries written before a key was configured), and refuses with that
   * verification's failure, writing nothing, when they do not hold. Run it periodically and keep
   * the file outside Redis: `verify --anchors` then detects entries deleted, truncated,
   * reordered or replaced, even the whole log and head deleted.
   *
   * @throws `INVALID_CONFIG` without a key (an anchor anyone can write proves nothing).
   */
  async anchor(
    path: string,
  ): Promise<{ ok: true; anchor: AnchorResult } | Extract<VerifyResult, { ok: false }>> {
    const result = await anchorChains([this], path);
    return result.ok ? { ok: true, anchor: result.anchors[0] as AnchorResult } : result;
  }

  /**
   * The head to anchor next, after verifying the entries since the last of `points` (this
   * chain's anchors in a file; all entries when there is none). Used by {@link anchorChains}.
   */
  async headSinceAnchor(
    points: readonly AnchorPoint[],
  ): Promise<
    { ok: true; head: { seq: number; hash: string }; verified: number } | Extract<VerifyResult, { ok: false }>
  > {
    const last = points.reduce<AnchorPoint | undefined>(
      (a, p) => (a === undefined || p.seq >= a.seq ? p : a),
      undefined,
    );
    const snap = await this.snapshot();
    const { head, topSeq, base } = snap;
    const problem = this.baseProblem(snap, points);
    if (problem) return problem;
    let verifier: ChainVerifier;
    let from: number;
    if (last) {
      // Entry `last.seq` must still carry the anchored hash: the walk starts from it (or, when it
      // was archived and trimmed, the recorded base must be it).
      verifier = new ChainVerifier(last, { keys: this.keys });
      const [atAnchor] =
        last.seq === 0 || last.seq === base.seq
          ? []
          : await this.redis.xrange(this.streamKey, `${last.seq}-0`, `${last.seq}-0`);
      const stored =
        last.seq > 0 && last.seq === base.seq ? base.hash : atAnchor ? storedHash(atAnchor[1]) : undefined;
      if (last.seq > head.seq || (last.seq > 0 && stored !== last.hash)) {
        const reason = last.seq > head.seq ? "anchor-beyond-head" : "anchor-mismatch";
        return {
          ok: false,
          count: 0,
          firstBad: {
            seq: last.seq,
            id: "",
            reason,
            detail: `${last.label} no longer matches the log (head is seq ${head.seq})`,
          },
        };
      }
      from = last.seq + 1;
    } else {
      // baseProblem refused a trimmed log without anchors above: here base.seq is 0.
      verifier = new ChainVerifier(undefined, { keys: this.keys, acceptLegacyPrefix: true });
      from = 1;
    }
    if (!(await this.walk(verifier, from, head.seq)))
      return verifier.result() as Extract<VerifyResult, { ok: false }>;
    const result = verifier.result(head);
    if (!result.ok) return result;
    if (topSeq > head.seq) return this.beyondHead(result.count, head.seq, topSeq);
    return { ok: true, head, verified: result.count };
  }

  /** The wall clock of this log, for anchor times. */
  now(): number {
    return this.clock.now();
  }

  /**
   * Writes entries as JSONL (one entry per line, exactly as hashed) to `path`, a copy kept
   * outside Redis. Returns how many were written. A file starting at seq 1 verifies on its own
   * with {@link verifyJsonl}.
   */
  async exportJsonl(
    path: string,
    options: { fromSeq?: number } = {},
  ): Promise<{ count: number; lastSeq: number }> {
    const file = await open(path, "w");
    let count = 0;
    let lastSeq = 0;
    try {
      let start = `${Math.max(1, options.fromSeq ?? 1)}-0`;
      let prev: string | undefined;
      for (;;) {
        const page = await this.redis.xrange(this.streamKey, start, "+", "COUNT", PAGE);
        let chunk = "";
        for (const [id, fields] of page) {
          prev ??= await this.hashBefore(idSeq(id));
          chunk += `${expandStored(id, fields, prev)}\n`;
          prev = storedHash(fields) ?? "";
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

  /**
   * Checks that the archive file at `path` continues this chain's archive: it ends where the
   * chain was last trimmed (or later, a run cut short before its trim). Returns both points.
   * @throws `CONFLICT` when it does not (another file, or one of something else).
   */
  async archiveFileFits(
    path: string,
  ): Promise<{ base: { seq: number; hash: string }; last: { seq: number; hash: string } }> {
    const { base } = await this.snapshot();
    const last = await lastArchived(path);
    if (last.seq < base.seq || (last.seq === base.seq && last.hash !== base.hash))
      throw new AgentryError(
        "CONFLICT",
        `${path} ends at seq ${last.seq} but ${this.streamKey} is archived through seq ${base.seq}: name the archive file it was archived to`,
      );
    return { base, last };
  }

  /**
   * Archives the chain through `through` (a head `anchorChains` just anchored with `archived`):
   * appends the entries after what `path` already holds, up to `through.seq`, to the JSONL
   * archive at `path` (created at the first archive; it must hold the chain from seq 1 and end
   * where this log's archived part ends, so the file verifies on its own from the genesis
   * hash), syncs it to disk, and only then trims the stream through `through` (the head records
   * the point). Safe to repeat after a failure: entries already in the file are not written
   * again. Returns the entries appended and trimmed.
   * @throws `CONFLICT` when the file does not continue this log's archive.
   */
  async archiveTo(
    path: string,
    through: { seq: number; hash: string },
  ): Promise<{ appended: number; trimmed: number; lastSeq: number }> {
    const { base, last } = await this.archiveFileFits(path);
    if (last.seq > through.seq)
      throw new AgentryError("CONFLICT", `${path} already holds seq ${last.seq}, past seq ${through.seq}`);
    if (through.seq > base.seq) {
      const [at] = await this.redis.xrange(this.streamKey, `${through.seq}-0`, `${through.seq}-0`);
      if (!at || storedHash(at[1]) !== through.hash)
        throw new AgentryError(
          "CONFLICT",
          `${this.streamKey} does not hold seq ${through.seq} as anchored; verify the log`,
        );
    }
    let appended = 0;
    if (last.seq < through.seq) {
      // Everything written to the file is verified first (links and MACs), from the file's last
      // entry: the archive is a chain that verifies on its own.
      // The archive anchor at `through` vouches for entries written before a key was configured.
      const verifier = new ChainVerifier(last, {
        keys: this.keys,
        anchors: [{ ...through, archived: true, label: `archive anchor of seq ${through.seq}` }],
      });
      const file = await open(path, "a", 0o600);
      try {
        let start = `${last.seq + 1}-0`;
        for (;;) {
          const page = await this.redis.xrange(this.streamKey, start, `${through.seq}-0`, "COUNT", PAGE);
          let chunk = "";
          for (const [id, fields] of page) {
            const raw = expandStored(id, fields, verifier.lastHash ?? "");
            if (!verifier.push(raw, id, `${last.seq + appended + 1}-0`)) {
              const bad = verifier.result() as Extract<VerifyResult, { ok: false }>;
              throw new AgentryError(
                "CONFLICT",
                `${this.streamKey} broken at seq ${bad.firstBad.seq}: ${bad.firstBad.reason}; nothing past seq ${last.seq + appended} archived`,
              );
            }
            chunk += `${raw}\n`;
            appended += 1;
            start = `(${id}`;
          }
          if (chunk) await file.write(chunk);
          if (page.length < PAGE) break;
        }
        const done = verifier.result(through);
        if (!done.ok)
          throw new AgentryError(
            "CONFLICT",
            `${this.streamKey} no longer holds seq ${through.seq} as anchored; verify the log`,
          );
        await file.sync();
      } finally {
        await file.close();
      }
    } else if (last.hash !== through.hash) {
      throw new AgentryError(
        "CONFLICT",
        `${path} holds a different entry at seq ${through.seq}; verify the log`,
      );
    }
    if (through.seq <= base.seq) return { appended, trimmed: 0, lastSeq: through.seq };
    const reply = await scripts.trimAudit(
      this.redis,
      [this.streamKey, this.headKey],
      [through.seq, through.hash],
    );
    if (reply[0] !== 1)
      throw new AgentryError(
        "CONFLICT",
        `${this.streamKey} not trimmed through seq ${through.seq}: ${String(reply[1])}`,
      );
    return { appended, trimmed: Number(reply[1]), lastSeq: through.seq };
  }
}

/** The last entry of an archive file (seq 0 and the genesis hash when it is missing or empty). */
async function lastArchived(path: string): Promise<{ seq: number; hash: string }> {
  let last = { seq: 0, hash: GENESIS_HASH };
  try {
    const lines = createInterface({
      input: createReadStream(path, { encoding: "utf8" }),
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    for await (const line of lines) {
      if (line.trim() === "") continue;
      const entry = JSON.parse(line) as { seq?: unknown; hash?: unknown };
      if (typeof entry.seq !== "number" || typeof entry.hash !== "string")
        throw new AgentryError("CONFLICT", `${path} is not an audit archive (a line is not an entry)`);
      last = { seq: entry.seq, hash: entry.hash };
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return last;
    if (err instanceof SyntaxError)
      throw new AgentryError("CONFLICT", `${path} is not an audit archive (a line is not JSON)`, {
        cause: err,
      });
    throw err;
  }
  return last;
}

/** An append held for its attempt's next step write. */
interface HeldEntry {
  input: AuditEntryInput;
  body: Map<string, string>;
  once: string | undefined;
}

/** A held commit waiting for its turn in the queue. */
interface QueuedCommit {
  commit: true;
  fence: Fence;
  entries: HeldEntry[];
  rider: AuditRider<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

function holdId(fence: Fence): string {
  return `${fence.key}\u0000${fence.token}`;
}

/** One append waiting for the next batch. */
interface QueuedEntry {
  input: AuditEntryInput;
  /** The redacted entry's members, each already canonical JSON (encoded once, at append). */
  body: Map<string, string>;
  fence: Fence | undefined;
  once: string | undefined;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

function auditFailed(input: AuditEntryInput, err: unknown): AgentryError {
  return new AgentryError(
    "AUDIT_FAILED",
    `audit append failed: ${err instanceof Error ? err.message : String(err)}`,
    {
      cause: err,
      details: { type: input.type },
    },
  );
}

/**
 * Verifies a JSONL export on its own. A file starting at seq 1 is checked from the genesis hash;
 * a partial export (starting later) trusts its first entry's prevHash. With `keys` the entries'
 * MACs are checked as {@link AuditLog.verify} does; `anchors` must each match a line.
 */
export async function verifyJsonl(
  path: string,
  options: { keys?: AuditKeyring; anchors?: readonly AnchorPoint[] } = {},
): Promise<VerifyResult> {
  const lines = createInterface({
    input: createReadStream(path, { encoding: "utf8" }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let verifier: ChainVerifier | undefined;
  let lineNo = 0;
  for await (const line of lines) {
    lineNo += 1;
    if (line.trim() === "") continue;
    if (!verifier) {
      const first = safeSeq(line);
      verifier = new ChainVerifier(first === 1 ? undefined : "first", options);
    }
    if (!verifier.push(line, `line ${lineNo}`)) break;
  }
  return (verifier ?? new ChainVerifier(undefined, options)).result();
}

function safeSeq(line: string): number | undefined {
  try {
    return (JSON.parse(line) as { seq?: number }).seq;
  } catch {
    return undefined;
  }
}

function parseEntry(raw: string): AuditEntry | undefined {
  try {
    const entry = JSON.parse(raw) as unknown;
    return typeof entry === "object" && entry !== null ? (entry as AuditEntry) : undefined;
  } catch {
    return undefined;
  }
}

/** Where a check of several chains stopped: the chain's stream key and its failure. */
export type ChainsFailure = Extract<VerifyResult, { ok: false }> & { stream: string };

/**
 * Appends one authenticated line to the anchors file at `path` (created when missing) holding
 * the heads of every chain in `logs` (a deployment's global chain and each queue shard's): one
 * line, so no chain can later be rolled back without contradicting it. Each chain's entries
 * since its last anchor in the file are verified first; on the first that does not hold nothing
 * is written and its failure returned with its stream. One chain writes a line of the single-chain
 * form, exactly as before. All logs must hold the same keys.
 *
 * @throws `INVALID_CONFIG` without a key (an anchor anyone can write proves nothing).
 */
export async function anchorChains(
  logs: readonly AuditLog[],
  path: string,
  options: { archived?: boolean } = {},
): Promise<{ ok: true; anchors: (AnchorResult & { stream: string })[] } | ChainsFailure> {
  const first = logs[0];
  const key = first?.keys.current;
  if (!first || !key)
    throw new AgentryError("INVALID_CONFIG", "AGENTRY_AUDIT_KEY is not set: an anchor must be authenticated");
  const heads: { stream: string; seq: number; hash: string; verified: number }[] = [];
  for (const log of logs) {
    const file = await readAnchors(path, { stream: log.streamKey, keys: log.keys, missingOk: true });
    if (!file.ok)
      return {
        ok: false,
        stream: log.streamKey,
        count: 0,
        firstBad: { seq: -1, id: `anchors line ${file.line}`, reason: "bad-anchor", detail: file.detail },
      };
    const next = await log.headSinceAnchor(file.points);
    if (!next.ok) return { ...next, stream: log.streamKey };
    heads.push({ stream: log.streamKey, ...next.head, verified: next.verified });
  }
  const time = new Date(first.now()).toISOString();
  const archived = options.archived === true;
  const line =
    heads.length === 1
      ? anchorLine(key, { ...(heads[0] as (typeof heads)[number]), time, archived })
      : anchorSetLine(key, { heads, time, archived });
  await appendFile(path, `${line}\n`, { mode: 0o600 });
  return {
    ok: true,
    anchors: heads.map((h) => ({ stream: h.stream, seq: h.seq, hash: h.hash, time, verified: h.verified })),
  };
}

/**
 * Moves the entries of every chain in `logs` out of Redis into JSONL archive files (`files[i]`
 * for `logs[i]`), keeping them verifiable: first one authenticated anchor line marked `archived`
 * holding every chain's head is appended to the anchors file at `anchorsPath` (after verifying
 * each chain since its last anchor, as {@link anchorChains}); then each chain's entries up to
 * that head are appended to its archive file, synced, and trimmed from Redis
 * ({@link AuditLog.archiveTo}). `verify --anchors` then checks each chain from the archived point
 * (which an archive anchor must record), and each archive file verifies on its own from seq 1.
 * A run cut short is finished by the next one (nothing is written twice).
 *
 * @throws `INVALID_CONFIG` without a key; `CONFLICT` when a file does not continue its chain's archive.
 */
export async function archiveChains(
  logs: readonly AuditLog[],
  files: readonly string[],
  anchorsPath: string,
): Promise<
  | {
      ok: true;
      chains: { stream: string; file: string; appended: number; trimmed: number; lastSeq: number }[];
      time: string;
    }
  | ChainsFailure
> {
  if (files.length !== logs.length)
    throw new AgentryError("INVALID_INPUT", `${logs.length} chains but ${files.length} archive files`);
  // Every file must continue its chain's archive before anything is anchored or written.
  for (const [i, log] of logs.entries()) await log.archiveFileFits(files[i] as string);
  const anchored = await anchorChains(logs, anchorsPath, { archived: true });
  if (!anchored.ok) return anchored;
  const chains = [];
  for (const [i, log] of logs.entries()) {
    const head = anchored.anchors[i] as AnchorResult & { stream: string };
    const file = files[i] as string;
    chains.push({ stream: log.streamKey, file, ...(await log.archiveTo(file, head)) });
  }
  return { ok: true, chains, time: anchored.anchors[0]?.time ?? "" };
}

/**
 * Verifies every chain in `logs` as of one snapshot each; a chain that the anchors file at
 * `path` names is checked against its anchors too (single-chain lines and lines of several heads
 * alike, so files written before the queue was sharded still verify). A chain the file never
 * names (a shard added since the last anchor) is verified on its own and listed in `unanchored`.
 * Fails on the first chain that does not hold, on a line of the file that fails its MAC, and when
 * the file names none of the chains. Throws when the file cannot be read.
 */
export async function verifyChainsWithAnchors(
  logs: readonly AuditLog[],
  path: string,
): Promise<
  | { ok: true; count: number; anchors: number; authenticated: boolean; chains: number; unanchored: string[] }
  | ChainsFailure
> {
  let count = 0;
  let anchors = 0;
  let authenticated = true;
  const unanchored: string[] = [];
  for (const log of logs) {
    const file = await readAnchors(path, { stream: log.streamKey, keys: log.keys });
    if (!file.ok)
      return {
        ok: false,
        stream: log.streamKey,
        count,
        firstBad: { seq: -1, id: `anchors line ${file.line}`, reason: "bad-anchor", detail: file.detail },
      };
    if (file.points.length === 0) unanchored.push(log.streamKey);
    const result = await log.verify(file.points.length > 0 ? { anchors: file.points } : {});
    if (!result.ok) return { ...result, stream: log.streamKey, count: count + result.count };
    count += result.count;
    anchors += result.anchors;
    authenticated &&= result.authenticated;
  }
  if (unanchored.length === logs.length)
    return {
      ok: false,
      stream: logs[0]?.streamKey ?? "",
      count,
      firstBad: {
        seq: -1,
        id: "",
        reason: "bad-anchor",
        detail: `no anchor of ${logs.map((l) => l.streamKey).join(", ")} in ${path}`,
      },
    };
  return { ok: true, count, anchors, authenticated, chains: logs.length, unanchored };
}
