import type { AgentryClient, TaskStreamEntry } from "@agentry/runtime";

/**
 * A position in a task's stream: a Redis stream entry id `<ms>-<seq>`, compared as the pair of
 * numbers (not as text: `9` sorts before `10`). Every replica reads the same ids, so they are the
 * SSE event ids: stable across reconnects, increasing within a task.
 */
export interface StreamId {
  ms: bigint;
  seq: bigint;
}

/** The largest sequence number of a stream id; never reached by a real entry. */
const MAX_SEQ = 2n ** 64n - 1n;
const ID = /^(\d{1,20})-(\d{1,20})$/;
/** Entries read per round trip. */
const BATCH = 1_000;

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
 * The id of a task's final event (the stream holds no entry for the end, which BullMQ records):
 * the task's finish time, or the last id sent if later, with the largest sequence number, so it
 * sorts after every entry sent before it and is recognisable on a reconnect as "the final event
 * was delivered".
 */
export function finalEventId(finishedAt: number, notBefore?: StreamId): StreamId {
  const ms = BigInt(Math.max(0, Math.trunc(finishedAt)));
  return { ms: notBefore && notBefore.ms > ms ? notBefore.ms : ms, seq: MAX_SEQ };
}

/** True for an id made by {@link finalEventId}: only a final event has one. */
export const isFinalEventId = (id: StreamId): boolean => id.seq === MAX_SEQ;

/** One entry of a task's stream, with its id. */
export interface TaskStreamItem {
  id: StreamId;
  entry: TaskStreamEntry;
}

/** Where a task's stream stands: its last id, and the newest id trimming removed (entries after a reader's position may be gone when this is past it). */
export interface StreamPosition {
  top: StreamId;
  maxDeleted: StreamId | undefined;
}

/** The id before every entry: a stream read from it starts at the beginning. */
export const STREAM_START: StreamId = Object.freeze({ ms: 0n, seq: 0n });

/**
 * Reads one task's stream (`<prefix>:<queue>:<taskId>:stream`: the task's progress and model
 * text, written by its workers, capped and expiring) with plain, non-blocking range reads.
 */
export class TaskEventLog {
  private readonly client: AgentryClient;

  constructor(client: AgentryClient) {
    this.client = client;
  }

  /** The stream's position now; a missing stream (nothing written yet, or expired) is at `0-0`. */
  async position(taskId: string): Promise<StreamPosition> {
    const key = await this.client.taskStreamKey(taskId);
    let info: unknown[];
    try {
      info = (await this.client.redis.call("XINFO", "STREAM", key)) as unknown[];
    } catch {
      return { top: STREAM_START, maxDeleted: undefined };
    }
    const get = (name: string) => {
      const i = info.indexOf(name);
      return i >= 0 && typeof info[i + 1] === "string" ? parseStreamId(info[i + 1] as string) : undefined;
    };
    const maxDeleted = get("max-deleted-entry-id");
    return {
      top: get("last-generated-id") ?? STREAM_START,
      maxDeleted: maxDeleted && compareStreamIds(maxDeleted, STREAM_START) > 0 ? maxDeleted : undefined,
    };
  }

  /** The task's entries after `after`, in order, to the end of the stream. */
  async after(taskId: string, after: StreamId): Promise<TaskStreamItem[]> {
    const items: TaskStreamItem[] = [];
    let cursor = formatStreamId(after);
    while (true) {
      const batch = await this.client.readTaskStream(taskId, cursor, BATCH);
      for (const { id, entry } of batch) {
        const sid = parseStreamId(id);
        if (sid) items.push({ id: sid, entry });
        cursor = id;
      }
      if (batch.length < BATCH) return items;
    }
  }
}
