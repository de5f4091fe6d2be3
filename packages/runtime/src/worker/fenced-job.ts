import {
  AgentryError,
  defineScripts,
  keySpace,
  type AuditHold,
  type AuditRider,
  type Fence,
  type ScriptClient,
} from "@agentry/core";
import type { ChainableCommander, Redis } from "ioredis";
import { DEFAULT_TASK_STREAM_LIMITS, taskStreamKey, type TaskStreamLimits } from "../stream/task-stream.js";

const scripts = defineScripts<{
  commitStep: (
    /** The script builds the job's other keys from `job`; `auditHead` is read only with a hash. */
    keys: [job: string, auditHead: string],
    args: [
      token: string,
      jobId: string,
      entry: string,
      reset: "1" | "",
      progress: string,
      data: string,
      stepsTtlMs: number | "",
      maxLen: number,
      auditHash: string,
      ttlMs: number,
    ],
  ) => number;
}>(import.meta.url, { commitStep: "./commit-step-2.lua" });

/** How long a task's step log lives after its last write unless the task ends first. @defaultValue 7 days */
export const DEFAULT_STEP_LOG_TTL_MS = 7 * 24 * 3_600_000;

/** One step's writes, see {@link FencedJobWriter.commit}. */
export interface StepWrite {
  /** Appended to the task's step log (JSON-encoded). */
  entry?: unknown;
  /** The entry replaces the log instead of following it (a new base). */
  reset?: boolean;
  /** Progress for the job, its BullMQ event and the task's stream. */
  progress?: unknown;
  /** The job's whole `data`, when it changed. */
  data?: unknown;
  /** The step log's time to live from this write (ms); unset leaves it as it is. */
  stepsTtlMs?: number;
  /** Audit entries the attempt holds: written in the same MULTI/EXEC, or the step is not written. */
  audit?: AuditHold;
}

/** The BullMQ keys of one job an attempt writes to (BullMQ's own layout under its prefix), and the task's stream beside them. */
export interface JobKeys {
  job: string;
  lock: string;
  events: string;
  meta: string;
  /** The task's stream of progress and text (see `TaskStreamEntry`). */
  stream: string;
  /** The task's step log: what its attempts did, one list entry per step (see `StepWrite`). */
  steps: string;
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
    steps: keys.key(queueName, jobId, "steps"),
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

  /**
   * Sets the job's `data` or `progress` (progress also goes to the task's stream): a step with
   * nothing else in it. Throws `LOCK_LOST` when fenced out.
   */
  async write(
    keys: JobKeys,
    jobId: string,
    token: string,
    field: "data" | "progress",
    value: unknown,
  ): Promise<void> {
    await this.commit(keys, jobId, token, field === "data" ? { data: value } : { progress: value });
  }

  /**
   * Writes one step of an attempt in one fenced script call (`commit-step-2.lua`): the step
   * log entry, progress, data; with held audit entries (`write.audit`), those
   * and the step in one MULTI/EXEC whose step part writes only if the entries were appended.
   * Throws `LOCK_LOST` when fenced out: nothing is written.
   */
  async commit(keys: JobKeys, jobId: string, token: string, write: StepWrite): Promise<void> {
    const argsFor = (auditHash: string) =>
      [
        token,
        jobId,
        write.entry === undefined ? "" : JSON.stringify(write.entry),
        write.reset ? "1" : "",
        write.progress === undefined ? "" : JSON.stringify(write.progress),
        write.data === undefined ? "" : JSON.stringify(write.data),
        write.stepsTtlMs ?? "",
        this.limits.maxLen,
        auditHash,
        this.limits.ttlMs,
      ] as const;
    if (!write.audit || write.audit.size === 0) {
      const reply = await scripts.commitStep(this.redis, [keys.job, keys.job], [...argsFor("")]);
      if (reply !== 1) throw lockLost(jobId, reply);
      return;
    }
    const rider: AuditRider<void> = {
      define: (client: ScriptClient) => scripts.commitStep.defineOn(client),
      load: (client: ScriptClient) => scripts.commitStep.load(client),
      queue: (tx: ChainableCommander, head) =>
        scripts.commitStep.queue(tx, [keys.job, head?.key ?? keys.job], [...argsFor(head?.hash ?? "")]),
      reply: ([err, reply]) => {
        if (err) throw err;
        if (reply !== 1) throw lockLost(jobId, Number(reply));
      },
    };
    await write.audit.commit(rider);
  }
}

function lockLost(jobId: string, reply: number): AgentryError {
  return new AgentryError(
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
