import { z } from "zod";
import { TENANT_ID_PATTERN, TENANT_ID_RULE, agentryErrorDataSchema } from "@agentry/core";

/** The queue all agent tasks go through. */
export const DEFAULT_QUEUE_NAME = "tasks";

/** Largest prompt accepted, in characters. Larger → `PAYLOAD_TOO_LARGE`. */
export const MAX_PROMPT_CHARS = 100_000;

const id = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9_.:@-]+$/, "only letters, digits and _ . : @ - are allowed");

/**
 * Limits of a task's `metadata`: it travels in every job, status answer and event, so a caller
 * must not be able to make every read of the queue slow or large with it.
 */
export const METADATA_LIMITS = {
  /** Most entries. */
  maxEntries: 32,
  /** Longest key, in characters (at least 1). */
  maxKeyChars: 64,
  /** Longest value, in characters. */
  maxValueChars: 500,
  /** Most bytes of all keys and values together, UTF-8 encoded. */
  maxTotalBytes: 8 * 1024,
} as const;

/** String → string metadata within {@link METADATA_LIMITS}; each violation names its limit. */
export const taskMetadataSchema = z
  .record(z.string(), z.string())
  .superRefine((metadata, ctx) => {
    const { maxEntries, maxKeyChars, maxValueChars, maxTotalBytes } = METADATA_LIMITS;
    const entries = Object.entries(metadata);
    if (entries.length > maxEntries) {
      ctx.addIssue({ code: "custom", message: `at most ${maxEntries} entries (got ${entries.length})` });
    }
    let bytes = 0;
    for (const [key, value] of entries) {
      bytes += Buffer.byteLength(key, "utf8") + Buffer.byteLength(value, "utf8");
      if (key.length < 1 || key.length > maxKeyChars) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `keys are 1 to ${maxKeyChars} characters (got ${key.length})`,
        });
      }
      if (value.length > maxValueChars) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `values are at most ${maxValueChars} characters (got ${value.length})`,
        });
      }
    }
    if (bytes > maxTotalBytes) {
      ctx.addIssue({
        code: "custom",
        message: `at most ${maxTotalBytes} bytes of keys and values in total, UTF-8 (got ${bytes})`,
      });
    }
  })
  .describe(
    `string → string, at most ${METADATA_LIMITS.maxEntries} entries, keys 1-${METADATA_LIMITS.maxKeyChars} characters, ` +
      `values at most ${METADATA_LIMITS.maxValueChars} characters, ${METADATA_LIMITS.maxTotalBytes} bytes in total (UTF-8)`,
  );

/** A tenant id: no ':' (it is one segment of every tenant-qualified id, see `tenantOwnedId`). */
const tenantId = z.string().regex(TENANT_ID_PATTERN, `tenant must be ${TENANT_ID_RULE}`);

/** What a caller submits. The tenant is never part of it: it comes from credentials. */
export const submitTaskInputSchema = z.object({
  prompt: z.string().trim().min(1, "prompt must not be empty"),
  sessionId: id.optional(),
  userId: id.optional(),
  system: z.string().max(20_000).optional(),
  model: z.string().max(100).optional(),
  maxSteps: z.number().int().min(1).max(50).optional(),
  maxTokens: z.number().int().min(1).max(64_000).optional(),
  idempotencyKey: z.string().min(1).max(200).optional(),
  metadata: taskMetadataSchema.optional(),
});

/** Input of {@link submitTaskInputSchema}. */
export type SubmitTaskInput = z.input<typeof submitTaskInputSchema>;

/** The payload stored in the job: validated input plus who submitted it and when. */
export const agentTaskPayloadSchema = submitTaskInputSchema.extend({
  prompt: z.string().min(1).max(MAX_PROMPT_CHARS),
  tenant: tenantId,
  userId: id,
  sessionId: id,
  submittedAt: z.number().int(),
  /** Serialised producer span context (W3C traceparent), for logs. */
  traceparent: z.string().optional(),
  /** Set when the task is a child of a fan-out group. */
  groupId: z.string().optional(),
  // Checked against METADATA_LIMITS at submit; a job queued before a limit changed still runs.
  metadata: z.record(z.string(), z.string()).optional(),
});

/** A validated agent task payload. */
export type AgentTaskPayload = z.infer<typeof agentTaskPayloadSchema>;

/** Why a task is parked in BullMQ's delayed set. */
export const parkedSchema = z.discriminatedUnion("reason", [
  z.object({
    reason: z.literal("approval"),
    approvalIds: z.array(z.string()),
    until: z.number(),
    /** Names of the tool calls waiting for a decision. */
    tools: z.array(z.string()).optional(),
  }),
  z.object({ reason: z.literal("session_busy"), until: z.number() }),
  z.object({ reason: z.literal("budget_contended"), until: z.number() }),
  /** Held back because its tenant runs `maxRunning` tasks already; woken when a slot frees. */
  z.object({ reason: z.literal("tenant_capped"), until: z.number() }),
  /**
   * Its attempt stopped on Redis being unavailable (unreachable, failing over, refusing writes,
   * or short of the replicas AGENTRY_REDIS_WAIT_REPLICAS asks for): it waits, and tries again.
   */
  z.object({ reason: z.literal("redis_unavailable"), until: z.number() }),
]);

/** A parked task's reason. */
export type Parked = z.infer<typeof parkedSchema>;

/** Everything Agentry keeps in a job's data. Checkpoint and bookkeeping are added by the worker. */
export const agentJobDataSchema = z.object({
  payload: agentTaskPayloadSchema,
  /** The agent loop's serialisable state after the last completed step (see @agentry/agent AgentState). */
  checkpoint: z.unknown().optional(),
  parked: parkedSchema.optional(),
  /** The first attempt's trace, so a resumed task links to it. */
  firstTrace: z.string().optional(),
  /** Typed error of the final failure (BullMQ only keeps a message). */
  error: agentryErrorDataSchema.optional(),
  /** Times this task was parked (approval, busy session, contended budget, tenant at its cap). */
  parkCount: z.number().int().default(0),
  /** Attempts stopped by Redis being unavailable: the exponent of the next wait for it. */
  redisWaits: z.number().int().optional(),
});

/** The data of an agent job. */
export type AgentJobData = z.infer<typeof agentJobDataSchema>;

/** What a completed agent task returns. */
export const agentTaskResultSchema = z.object({
  text: z.string(),
  steps: z.number().int(),
  usage: z.object({
    input: z.number().int(),
    output: z.number().int(),
    cacheCreationInput: z.number().int(),
    cacheReadInput: z.number().int(),
  }),
  costMicroUsd: z.number().int(),
  model: z.string(),
  finishedAt: z.number().int(),
});

/** The result of a completed agent task. */
export type AgentTaskResult = z.infer<typeof agentTaskResultSchema>;

/** A group of tasks submitted as one unit (fan-out). */
export const fanoutPayloadSchema = z.object({
  groupId: z.string(),
  tenant: tenantId,
  submittedAt: z.number().int(),
  /** `all-settled`: the group completes with each child's result or error (default). */
  failurePolicy: z.enum(["all-settled", "fail-fast"]),
  /** The children's task ids in submit order (the result keeps this order). */
  taskIds: z.array(z.string()).default([]),
});

/** The fan-out parent job's payload. */
export type FanoutPayload = z.input<typeof fanoutPayloadSchema>;

/** The result of a fan-out group, in the order the children were submitted. */
export type FanoutResult = {
  groupId: string;
  children: (
    | { taskId: string; status: "completed"; result: AgentTaskResult }
    | { taskId: string; status: "failed"; error: string }
  )[];
};

/**
 * The job catalog, shared by producer and worker: job name → payload schema, retry policy,
 * retention. Retention bounds Redis: finished jobs are kept for a while and then removed.
 */
export const TASK_CATALOG = {
  "agent.run": {
    schema: agentJobDataSchema,
    /** Failed attempts before the task fails (retryable errors only). */
    attempts: 5,
    /** Base of the exponential backoff; a provider's `retryAfterMs` wins when longer. */
    backoffMs: 1_000,
    /**
     * Parks (approval waits, busy session, contended budget, Redis unavailable) and rate-limit
     * waits count as started attempts, not as attempts.
     */
    maxStartedAttempts: 200,
    /** The longest a task waits for Redis before trying again (the waits double up to it from backoffMs). */
    redisWaitMaxMs: 30_000,
    removeOnComplete: { age: 7 * 24 * 3600, count: 10_000 },
    removeOnFail: { age: 30 * 24 * 3600, count: 50_000 },
  },
  "agent.fanout": {
    schema: fanoutPayloadSchema,
    attempts: 3,
    backoffMs: 1_000,
    maxStartedAttempts: 50,
    removeOnComplete: { age: 7 * 24 * 3600, count: 10_000 },
    removeOnFail: { age: 30 * 24 * 3600, count: 50_000 },
  },
} as const;

/** Job names of the catalog. */
export type TaskName = keyof typeof TASK_CATALOG;

/** BullMQ job options derived from the catalog. */
export function jobOptionsFor(name: TaskName) {
  const entry = TASK_CATALOG[name];
  return {
    attempts: entry.attempts,
    backoff: { type: "agentry", delay: entry.backoffMs },
    removeOnComplete: entry.removeOnComplete,
    removeOnFail: entry.removeOnFail,
  };
}

/** Exponential backoff that honours an error's `retryAfterMs` when that is longer. */
export function backoffDelayMs(attemptsMade: number, baseMs: number, retryAfterMs?: number): number {
  const exp = Math.min(baseMs * 2 ** Math.max(0, attemptsMade - 1), 60_000);
  const jitter = Math.floor(Math.random() * Math.min(250, baseMs));
  return Math.max(exp + jitter, retryAfterMs ?? 0);
}
