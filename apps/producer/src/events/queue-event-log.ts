import type { AgentryClient } from "@agentry/runtime";

/**
 * A position in the queue's event stream: a Redis stream entry id `<ms>-<seq>`, compared as the
 * pair of numbers (not as text: `9` sorts before `10`). Every replica reads the same ids, so they
 * are the SSE event ids: stable across reconnects, increasing within a task.
 */
export interface StreamId {
  ms: bigint;
  seq: bigint;
}

/** The largest sequence number of a stream id; never reached by a real entry. */
const MAX_SEQ = 2n ** 64n - 1n;
const ID = /^(\d{1,20})-(\d{1,20})$/;

/** Parses `<ms>-<seq>`; anything else (or out of range) → undefined. */
export function parseStreamId(text: string | undefined): StreamId | undefined {
  const match = ID.exec(text?.trim() ?? "");
  if (!match) return undefined;
  const ms = BigInt(match[1] ?? "");
  const seq = BigInt(match[2] ?? "");
  return ms > MAX_SEQ || seq > MAX_SEQ ? undefined : { ms, seq };
}

/** The text form of a stream id. */
export const formatStreamId = (id: StreamId): string => `${id.ms}-${id.seq}`;

/** Negative, zero or positive as `a` is before, at or after `b`. */
export function compareStreamIds(a: StreamId, b: StreamId): number {
  if (a.ms !== b.ms) return a.ms < b.ms ? -1 : 1;
  return a.seq === b.seq ? 0 : a.seq < b.seq ? -1 : 1;
}

/**
 * The id of a task's final event when the queue's event stream no longer holds its end (trimmed):
 * the task's finish time with the largest sequence number, so it sorts after every entry of that
 * millisecond and is recognisable on a reconnect as "the final event was delivered".
 */
export function fallbackFinalId(finishedAt: number, notBefore?: StreamId): StreamId {
  const ms = BigInt(Math.max(0, Math.trunc(finishedAt)));
  return { ms: notBefore && notBefore.ms > ms ? notBefore.ms : ms, seq: MAX_SEQ };
}

/** True for an id made by {@link fallbackFinalId}. */
export const isFallbackFinalId = (id: StreamId): boolean => id.seq === MAX_SEQ;

/** One entry of the queue's event stream that concerns a task. */
export interface TaskStreamEntry {
  id: StreamId;
  event: "progress" | "completed" | "failed";
  /** The progress object of a `progress` entry. */
  progress?: Record<string, unknown>;
}

/** Where the stream stands: its last id, and the newest id trimming removed (entries after a reader's position may be gone when this is past it). */
export interface StreamPosition {
  top: StreamId;
  maxDeleted: StreamId | undefined;
}

type Fields = string[];
const ZERO: StreamId = { ms: 0n, seq: 0n };
const BATCH = 500;
// How far before a task's recorded finish its end entry is looked for: the finish time is the
// worker's clock, the entry id Redis's.
const CLOCK_SKEW_MS = 60_000n;

function fieldsOf(fields: Fields): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i] as string] = fields[i + 1] as string;
  return out;
}

function entryOf(taskId: string, id: string, fields: Fields): TaskStreamEntry | undefined {
  const f = fieldsOf(fields);
  const sid = parseStreamId(id);
  if (!sid || f.jobId !== taskId) return undefined;
  if (f.event === "completed" || f.event === "failed") return { id: sid, event: f.event };
  if (f.event !== "progress") return undefined;
  try {
    const data: unknown = JSON.parse(f.data ?? "");
    if (typeof data === "object" && data !== null && !Array.isArray(data)) return { id: sid, event: "progress", progress: data as Record<string, unknown> };
  } catch {
    // A progress entry that is not JSON is not one Agentry wrote: skip it.
  }
  return undefined;
}

/**
 * Reads one task's entries from the queue's event stream (BullMQ's `<prefix>:<queue>:events`,
 * shared by all tasks, trimmed to about 10,000 entries) with plain, non-blocking range reads.
 */
export class QueueEventLog {
  private readonly client: AgentryClient;

  constructor(client: AgentryClient) {
    this.client = client;
  }

  private get key(): string {
    return this.client.queue.keys.events as string;
  }

  /** The stream's position now; an empty or missing stream is at `0-0`. */
  async position(): Promise<StreamPosition> {
    const redis = this.client.redis;
    let info: unknown[];
    try {
      info = (await redis.call("XINFO", "STREAM", this.key)) as unknown[];
    } catch {
      return { top: ZERO, maxDeleted: undefined };
    }
    const get = (name: string) => {
      const i = info.indexOf(name);
      return i >= 0 && typeof info[i + 1] === "string" ? parseStreamId(info[i + 1] as string) : undefined;
    };
    return { top: get("last-generated-id") ?? ZERO, maxDeleted: get("max-deleted-entry-id") };
  }

  /**
   * The task's entries after `after`, in order, up to and including its first end entry. Also
   * returns how far the stream was read, so the next read starts there and reads each entry once.
   */
  async after(taskId: string, after: StreamId): Promise<{ entries: TaskStreamEntry[]; scanned: StreamId }> {
    const redis = this.client.redis;
    const entries: TaskStreamEntry[] = [];
    let scanned = after;
    while (true) {
      const batch = (await redis.xrange(this.key, `(${formatStreamId(scanned)}`, "+", "COUNT", BATCH)) as [string, Fields][];
      for (const [id, fields] of batch) {
        scanned = parseStreamId(id) ?? scanned;
        const entry = entryOf(taskId, id, fields);
        if (!entry) continue;
        entries.push(entry);
        if (entry.event !== "progress") return { entries, scanned };
      }
      if (batch.length < BATCH) return { entries, scanned };
    }
  }

  /**
   * The id of a finished task's end entry, searched backwards from the newest entry to a minute
   * before `finishedAt`; undefined when the stream no longer holds it.
   */
  async endOf(taskId: string, finishedAt: number | undefined): Promise<StreamId | undefined> {
    const redis = this.client.redis;
    const floor = finishedAt === undefined ? 0n : BigInt(Math.trunc(finishedAt)) - CLOCK_SKEW_MS;
    let end = "+";
    while (true) {
      const batch = (await redis.xrevrange(this.key, end, "-", "COUNT", BATCH)) as [string, Fields][];
      for (const [id, fields] of batch) {
        const entry = entryOf(taskId, id, fields);
        if (entry && entry.event !== "progress") return entry.id;
        const sid = parseStreamId(id);
        if (!sid || sid.ms < floor) return undefined;
        end = `(${id}`;
      }
      if (batch.length < BATCH) return undefined;
    }
  }
}
