import { readFileSync } from "node:fs";
import { AgentryError, type Fence } from "@agentry/core";
import type { Redis } from "ioredis";

const UPDATE_JOB = readFileSync(new URL("./update-job-data.lua", import.meta.url), "utf8");
const COMMAND = "agentryUpdateJobFenced";

/** The BullMQ keys of one job an attempt writes to (BullMQ's own layout under its prefix). */
export interface JobKeys {
  job: string;
  lock: string;
  events: string;
  meta: string;
}

/** BullMQ's key layout: `<prefix>:<queue>:<jobId>`, its `:lock`, and the queue's `events` and `meta`. */
export function jobKeys(prefix: string, queueName: string, jobId: string): JobKeys {
  const queue = `${prefix}:${queueName}`;
  return { job: `${queue}:${jobId}`, lock: `${queue}:${jobId}:lock`, events: `${queue}:events`, meta: `${queue}:meta` };
}

/**
 * Writes an attempt makes to its own job (checkpoint data, progress), each fenced by the job
 * lock inside Redis: a write after the lock lapsed throws `LOCK_LOST` and changes nothing.
 */
export class FencedJobWriter {
  private readonly redis: Redis;

  constructor(redis: Redis) {
    this.redis = redis;
    if (!(COMMAND in redis)) redis.defineCommand(COMMAND, { lua: UPDATE_JOB, numberOfKeys: 4 });
  }

  /** The fence of one attempt: its job lock holding its token. */
  static fenceOf(keys: JobKeys, token: string): Fence {
    return { key: keys.lock, token };
  }

  async write(keys: JobKeys, jobId: string, token: string, field: "data" | "progress", value: unknown): Promise<void> {
    const run = (this.redis as unknown as Record<string, (...a: string[]) => Promise<number>>)[COMMAND] as (...a: string[]) => Promise<number>;
    const reply = await run.call(this.redis, keys.job, keys.lock, keys.events, keys.meta, token, field, JSON.stringify(value), jobId);
    if (reply === 1) return;
    throw new AgentryError("LOCK_LOST", reply === 0 ? `Task ${jobId}: this attempt no longer holds the job lock; another attempt owns the task` : `Task ${jobId} no longer exists`, {
      retryable: false,
      details: { taskId: jobId },
    });
  }
}
