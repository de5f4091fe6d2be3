import { AgentryError, defineScripts, keySpace, type Fence } from "@agentry/core";
import type { Redis } from "ioredis";
import { DEFAULT_TASK_STREAM_LIMITS, taskStreamKey, type TaskStreamLimits } from "../stream/task-stream.js";

const scripts = defineScripts<{
  updateJobData: (
    keys: [job: string, lock: string, events: string, meta: string, stream: string],
    args: [
      token: string,
      field: "data" | "progress",
      value: string,
      jobId: string,
      maxLen: number,
      ttlMs: number,
    ],
  ) => number;
}>(import.meta.url, { updateJobData: "./update-job-data-5.lua" });

/** The BullMQ keys of one job an attempt writes to (BullMQ's own layout under its prefix), and the task's stream beside them. */
export interface JobKeys {
  job: string;
  lock: string;
  events: string;
  meta: string;
  /** The task's stream of progress and text (see `TaskStreamEntry`). */
  stream: string;
}

/** BullMQ's key layout: `<prefix>:<queue>:<jobId>`, its `:lock`, the queue's `events` and `meta`; and the task's `:stream`. */
export function jobKeys(prefix: string, queueName: string, jobId: string): JobKeys {
  const keys = keySpace(prefix);
  return {
    job: keys.key(queueName, jobId),
    lock: keys.key(queueName, jobId, "lock"),
    events: keys.key(queueName, "events"),
    meta: keys.key(queueName, "meta"),
    stream: taskStreamKey(prefix, queueName, jobId),
  };
}

/**
 * Writes an attempt makes to its own job (checkpoint data, progress), each fenced by the job lock
 * inside Redis: a write after the lock lapsed changes nothing. Progress goes to the job and to
 * the task's stream in one script, so both tell the same story (model text goes to the stream
 * through `TextAppender`).
 */
export class FencedJobWriter {
  private readonly redis: Redis;
  private readonly limits: Required<TaskStreamLimits>;

  constructor(redis: Redis, limits: TaskStreamLimits = {}) {
    this.redis = redis;
    this.limits = { ...DEFAULT_TASK_STREAM_LIMITS, ...limits };
  }

  /** The fence of one attempt: its job lock holding its token. */
  static fenceOf(keys: JobKeys, token: string): Fence {
    return { key: keys.lock, token };
  }

  /** Sets the job's `data` or `progress` (progress also goes to the task's stream). Throws `LOCK_LOST` when fenced out. */
  async write(
    keys: JobKeys,
    jobId: string,
    token: string,
    field: "data" | "progress",
    value: unknown,
  ): Promise<void> {
    const reply = await scripts.updateJobData(
      this.redis,
      [keys.job, keys.lock, keys.events, keys.meta, keys.stream],
      [token, field, JSON.stringify(value), jobId, this.limits.maxLen, this.limits.ttlMs],
    );
    if (reply === 1) return;
    throw new AgentryError(
      "LOCK_LOST",
      reply === 0
        ? `Task ${jobId}: this attempt no longer holds the job lock; another attempt owns the task`
        : `Task ${jobId} no longer exists`,
      {
        retryable: false,
        details: { taskId: jobId },
      },
    );
  }
}
