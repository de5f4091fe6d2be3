import type { TaskProgress } from "../tasks/progress.js";

/**
 * One entry of a task's stream (`<prefix>:<queue>:<taskId>:stream`): a progress report or a
 * piece of a model call's text. Workers write both, fenced by the attempt's job lock, in the
 * order they happened; readers (the SSE endpoint, `agentry watch`) replay and follow it.
 */
export type TaskStreamEntry =
  { type: "progress"; progress: TaskProgress } | ({ type: "delta" } & TextDeltaEntry);

/**
 * A piece of the text of a task's model call. The text of a step is rebuilt by placing each
 * piece at its offset: `text = text.slice(0, offset) + piece`. Pieces of one generation follow
 * each other (`offset` = the length so far); a step generated again by a later attempt (its call
 * failed or its attempt lost the lock before the answer was checkpointed) starts over at offset 0,
 * which replaces what an earlier attempt sent for that step (see `StreamedText`).
 */
export interface TextDeltaEntry {
  /** The model call of the task (1-based, counted across attempts and resumes). */
  step: number;
  /** Length (UTF-16 code units) of the step's text before this piece. */
  offset: number;
  text: string;
}

/** Where a task's stream lives and how it is bounded. */
export interface TaskStreamLimits {
  /** Entries kept (approximately: Redis trims whole nodes, `MAXLEN ~`). @defaultValue 10_000 */
  maxLen?: number;
  /** The stream expires this long after its last write. @defaultValue 3_600_000 (1 h) */
  ttlMs?: number;
  /**
   * How long a completed task's stream stays, from its completion (never longer than `ttlMs`
   * would keep it): followers still reading get the rest, and a client that reconnects later gets
   * the task's result from its status instead. @defaultValue 300_000 (5 min)
   */
  finishedTtlMs?: number;
}

/** {@link TaskStreamLimits} with defaults applied. */
export const DEFAULT_TASK_STREAM_LIMITS: Required<TaskStreamLimits> = Object.freeze({
  maxLen: 10_000,
  ttlMs: 3_600_000,
  finishedTtlMs: 300_000,
});

/** The key of a task's stream, beside BullMQ's keys of the job; also the pub/sub channel its writes announce themselves on. */
export function taskStreamKey(prefix: string, queueName: string, taskId: string): string {
  return `${prefix}:${queueName}:${taskId}:stream`;
}

/** Parses one stream entry's fields; entries Agentry did not write (or cannot read) give undefined. */
export function parseTaskStreamEntry(fields: readonly string[]): TaskStreamEntry | undefined {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  if (f["type"] === "delta") {
    const step = Number(f["step"]);
    const offset = Number(f["offset"]);
    const text = f["text"];
    if (
      !Number.isSafeInteger(step) ||
      step < 1 ||
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      text === undefined
    )
      return undefined;
    return { type: "delta", step, offset, text };
  }
  if (f["type"] === "progress") {
    try {
      const progress: unknown = JSON.parse(f["data"] ?? "");
      if (typeof progress === "object" && progress !== null && !Array.isArray(progress))
        return { type: "progress", progress: progress as TaskProgress };
    } catch {
      // Not JSON: not an entry Agentry wrote.
    }
  }
  return undefined;
}

/** One entry of a task's stream with its stream id (`<ms>-<seq>`, increasing within the stream). */
export interface TaskStreamRecord {
  id: string;
  entry: TaskStreamEntry;
}

/**
 * A write announced on a task stream's channel: the id of the stream's last entry before it
 * (`"0-0"` when it was empty or gone) and the entries it added. A reader positioned at `prev`
 * may take `records` as the stream's next entries; any other reader reads the stream.
 */
export interface TaskStreamNotice {
  prev: string;
  records: TaskStreamRecord[];
}

/** Parses a task stream channel's message; anything else gives undefined (read the stream instead). */
export function parseTaskStreamNotice(message: string): TaskStreamNotice | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(message);
  } catch {
    return undefined;
  }
  const { prev, entries } = (raw ?? {}) as { prev?: unknown; entries?: unknown };
  if (typeof prev !== "string" || !Array.isArray(entries)) return undefined;
  const records: TaskStreamRecord[] = [];
  for (const item of entries) {
    if (!Array.isArray(item) || typeof item[0] !== "string") return undefined;
    const [id, type, ...rest] = item.map(String);
    const fields =
      type === "delta"
        ? ["type", "delta", "step", rest[0] ?? "", "offset", rest[1] ?? "", "text", rest[2] ?? ""]
        : ["type", type ?? "", "data", rest[0] ?? ""];
    const entry = parseTaskStreamEntry(fields);
    if (!entry || id === undefined) return undefined;
    records.push({ id, entry });
  }
  return { prev, records };
}
