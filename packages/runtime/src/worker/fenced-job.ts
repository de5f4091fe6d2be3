import { AgentryError, defineScripts, keySpace, type Fence } from "@agentry/core";
import type { Redis } from "ioredis";

const scripts = defineScripts<{
  updateJobData: (
    keys: [job: string, lock: string, events: string, meta: string],
    args: [token: string, field: "data" | "progress", value: string, jobId: string],
  ) => number;
}>(import.meta.url, { updateJobData: "./update-job-data-4.lua" });

/** The BullMQ keys of one job an attempt writes to (BullMQ's own layout under its prefix). */
export interface JobKeys {
  job: string;
  lock: string;
  events: string;
  meta: string;
}

/** BullMQ's key layout: `<prefix>:<queue>:<jobId>`, its `:lock`, and the queue's `events` and `meta`. */
export function jobKeys(prefix: string, queueName: string, jobId: string): JobKeys {
  const keys = keySpace(prefix);
  return { job: keys.key(queueName, jobId), lock: keys.key(queueName, jobId, "lock"), events: keys.key(queueName, "events"), meta: keys.key(queueName, "meta") };
}

/**
 * Writes an attempt makes to its own job (checkpoint data, progress), each fenced by the job
 * lock inside Redis: a write after the lock lapsed throws `LOCK_LOST` and changes nothing.
 */
export class FencedJobWriter {
  private readonly redis: Redis;

  constructor(redis: Redis) {
    this.redis = redis;
  }

  /** The fence of one attempt: its job lock holding its token. */
  static fenceOf(keys: JobKeys, token: string): Fence {
    return { key: keys.lock, token };
  }

  async write(keys: JobKeys, jobId: string, token: string, field: "data" | "progress", value: unknown): Promise<void> {
    const reply = await scripts.updateJobData(this.redis, [keys.job, keys.lock, keys.events, keys.meta], [token, field, JSON.stringify(value), jobId]);
    if (reply === 1) return;
    throw new AgentryError("LOCK_LOST", reply === 0 ? `Task ${jobId}: this attempt no longer holds the job lock; another attempt owns the task` : `Task ${jobId} no longer exists`, {
      retryable: false,
      details: { taskId: jobId },
    });
  }
}
