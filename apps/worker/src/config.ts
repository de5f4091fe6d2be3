import { z } from "zod";
import {
  AgentryError,
  envNonNegativeInt as num,
  envPositiveInt as positive,
  envVar,
  parseEnv,
  parseEnvWith,
  parseShardList,
  type AgentryEnv,
} from "@agentry/core";

/** Worker-only environment, on top of the shared contract in @agentry/core (parseEnv). */
export const workerEnvSchema = z.object({
  /** Port of `/healthz` and `/metrics`; 0 disables the server. */
  AGENTRY_WORKER_PORT: num(9464),
  /** Jobs all workers together may run at once; 0 = no global cap. */
  AGENTRY_GLOBAL_CONCURRENCY: num(0),
  AGENTRY_SHUTDOWN_GRACE_MS: num(10_000),
  AGENTRY_LOCK_DURATION_MS: num(10_000),
  AGENTRY_STALLED_INTERVAL_MS: num(5_000),
  /**
   * The longest a task waits for Redis between tries once an attempt stopped on it being
   * unavailable (a failover, an outage, too few replicas): the waits double from 1 s up to this.
   * They do not use up the task's attempts (5): a task fails on an outage only after 200 starts.
   */
  AGENTRY_REDIS_RETRY_MAX_MS: positive(30_000),
  /** How often a worker promotes decided or expired approvals whose event it missed, and reaps dead budget leases. */
  AGENTRY_RECONCILE_INTERVAL_MS: num(5_000),
  /**
   * How far this host's clock may be from Redis's (ms, either way; 0: no check). Further off, the
   * worker refuses to start, or stops taking jobs until its clock is back: BullMQ's delays run on
   * host clocks.
   */
  AGENTRY_MAX_CLOCK_SKEW_MS: num(1_000),
  /** How often the worker reads Redis's time again (its leases and expiries run on Redis's time). */
  AGENTRY_CLOCK_SYNC_MS: positive(10_000),
  /**
   * How often the worker reads Redis's maxmemory-policy and evicted keys again (every master of a
   * cluster; 0: only at start). A Redis that evicts keys refuses the start and, later, stops the
   * worker taking jobs until it is back to noeviction.
   */
  AGENTRY_EVICTION_CHECK_MS: num(30_000),
  /** Budget reservation lease: a dead worker's reservation is settled at its reserved amount after it. */
  AGENTRY_BUDGET_LEASE_MS: num(120_000),
  /**
   * Budget allowances: 0 (off) reserves and settles every model call on the ledger; N draws N
   * calls' worth per scope at once, serves calls from it in memory and returns it settled at what
   * they used (idle 1 s, at most 5 s old), so the ledger's Redis slot sees a draw and a return per
   * N calls. Limits stay exact; a dead worker's allowances are charged in full by the reaper.
   */
  AGENTRY_BUDGET_ALLOWANCE_CALLS: num(0),
  /** Webhook for approval notifications (POST JSON). */
  AGENTRY_APPROVAL_WEBHOOK_URL: envVar(z.string().url().optional()),
  /**
   * Longest silence of a streaming model call (before its first event and between events); past
   * it the call fails with a retryable PROVIDER_UNAVAILABLE and the queue retries the task.
   */
  AGENTRY_MODEL_IDLE_TIMEOUT_MS: positive(60_000),
  /** Entries a task's stream (progress and model text) keeps, approximately. */
  AGENTRY_TASK_STREAM_MAX_LEN: positive(10_000),
  /** A task's stream expires this long after its last write. */
  AGENTRY_TASK_STREAM_TTL_MS: positive(3_600_000),
  /**
   * A completed task's stream stays this long after it completed (if its TTL would keep it
   * longer); a later reconnect gets the result from the task's status.
   */
  AGENTRY_TASK_STREAM_FINISHED_TTL_MS: positive(300_000),
  /**
   * The shortest time between two writes of a task's model text to its stream: text after a quiet
   * interval goes at once, a burst is coalesced into one write (the longest any text waits).
   */
  AGENTRY_TEXT_FLUSH_MS: positive(20),
  /** With AGENTRY_LLM=scripted: the pause between the streamed words of its answers (demos). */
  AGENTRY_SCRIPTED_DELTA_MS: num(0),
  /** Timeout of a reference tool call; past it the model gets an error tool_result and the loop goes on. */
  AGENTRY_TOOL_TIMEOUT_MS: num(30_000),
  /**
   * Fault injection, off by default (0): `delete_resource` hangs this long AFTER recording its
   * deletion, ignoring cancellation, like a side effect that never answers. The fault-injection
   * suite uses it to kill a worker mid tool call and to push a tool past its timeout.
   */
  AGENTRY_TOOL_DELAY_MS: num(0),
  /** Worker process name in logs and BullMQ. */
  AGENTRY_WORKER_NAME: envVar(z.string().optional()),
  /**
   * The queue shards this process consumes, e.g. `0,2` (checked against `AGENTRY_SHARDS` by
   * {@link parseWorkerConfig}); unset = every shard.
   */
  AGENTRY_WORKER_SHARDS: envVar(z.string().optional()),
});

/** Everything the worker reads from the environment, parsed once. `AGENTRY_WORKER_SHARDS` is resolved to shard numbers, lowest first. */
export type WorkerConfig = AgentryEnv &
  Omit<z.infer<typeof workerEnvSchema>, "AGENTRY_WORKER_SHARDS"> & { AGENTRY_WORKER_SHARDS: number[] };

/** The refusal of a worker that has no model configured; names both ways out. */
export const NO_MODEL_MESSAGE =
  "no model configured: set ANTHROPIC_API_KEY (or AGENTRY_LLM=anthropic with ANTHROPIC_BASE_URL for a gateway) to run tasks on Claude, " +
  "or AGENTRY_LLM=scripted to run the offline ScriptedModel, which answers every task with canned text (demos and tests only)";

/**
 * Parses the worker's environment. Throws `INVALID_CONFIG` naming every bad variable.
 *
 * Unlike the shared contract (which resolves a missing `AGENTRY_LLM` to `scripted` when there is no
 * key, fine for the CLI and the producer, which call no model), a worker refuses to start without
 * `ANTHROPIC_API_KEY` unless `AGENTRY_LLM` is set explicitly: a worker that lost its key in a
 * deploy must not "complete" real tasks with the scripted model's canned answers.
 */
export function parseWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const base = parseEnv(env);
  const worker = parseEnvWith(workerEnvSchema, env);
  const llmChosen = typeof env["AGENTRY_LLM"] === "string" && env["AGENTRY_LLM"].trim() !== "";
  if (!llmChosen && !base.ANTHROPIC_API_KEY) throw new AgentryError("INVALID_CONFIG", NO_MODEL_MESSAGE);
  return {
    ...base,
    ...worker,
    AGENTRY_WORKER_SHARDS: parseShardList(worker.AGENTRY_WORKER_SHARDS, base.AGENTRY_SHARDS),
  };
}
