import {
  DelayedError,
  Queue,
  RateLimitError,
  UnrecoverableError,
  WaitingError,
  Worker,
  type Job,
  type Telemetry,
} from "bullmq";
import type { Redis } from "ioredis";
import {
  AgentryError,
  createRedis,
  DEFAULT_KEY_PREFIX,
  keySpace,
  type Fence,
  type Logger,
  RepeatedErrors,
  assertNoEviction,
  describeEviction,
  describeSkew,
  evictingNodes,
  keepClockSynced,
  readEvictionStates,
  unreachableNodes,
  type EvictionState,
  systemClock,
  type Clock,
  withTimeout,
} from "@agentry/core";
import {
  DEFAULT_QUEUE_NAME,
  TASK_CATALOG,
  agentJobDataSchema,
  backoffDelayMs,
  type AgentJobData,
  type AgentTaskPayload,
  type AgentTaskResult,
  type FanoutPayload,
  type FanoutResult,
} from "../tasks/catalog.js";
import type { TaskProgress } from "../tasks/progress.js";
import { cancelChannel, cancelKey, wakeKey } from "../tasks/cancellation.js";
import {
  DEFAULT_TASK_STREAM_LIMITS,
  type TaskStreamLimits,
  type TextDeltaEntry,
} from "../stream/task-stream.js";
import { TextAppender } from "../stream/text-appender.js";
import { TextBatcher } from "../stream/text-batcher.js";
import type { TaskOutcome } from "./job-outcome.js";
import { DEFAULT_STEP_LOG_TTL_MS, FencedJobWriter, jobKeys, type StepWrite } from "./fenced-job.js";
import { FairShare, type TenantSlot } from "../fair/fair-share.js";

/** What a task handler gets for one attempt of one task. */
export interface TaskExecution {
  taskId: string;
  payload: AgentTaskPayload;
  /** State saved into the job's data by an earlier attempt with {@link saveCheckpoint}, if any. */
  checkpoint: unknown;
  /**
   * The task's step log as earlier attempts wrote it with {@link commitStep}, oldest entry first;
   * empty on a task's first start (nothing is read then).
   */
  steps: unknown[];
  /** Parked reason of the previous attempt, if it was parked. */
  parked: AgentJobData["parked"];
  /** 1 on the first attempt that started. */
  attemptsStarted: number;
  /** No attempt is left after this one: a retryable failure now fails the task for good. */
  finalAttempt: boolean;
  /** Aborted on cancellation, on shutdown after the grace period, and when the attempt loses its job lock (`LOCK_LOST`). */
  signal: AbortSignal;
  /**
   * The attempt's job lock. Every write the attempt makes on the task's behalf (checkpoint,
   * progress, session history, audit, turn release) is checked against it inside Redis, so an
   * attempt whose lock lapsed while another worker took the task commits nothing more.
   */
  fence: Fence;
  /**
   * Persists loop state into the job's data (rewritten whole), so any worker can continue from
   * it. Fenced: `LOCK_LOST` once the lock is gone. {@link commitStep} appends instead.
   */
  saveCheckpoint(state: unknown): Promise<void>;
  /**
   * Writes one step in one fenced call: an entry appended to the task's step log (or replacing
   * it), progress, and the audit entries the attempt holds (`audit`). Text published before it
   * is written first. The log expires `stepLogTtlMs` after its last write and is dropped when the
   * task completes. Throws `LOCK_LOST` when fenced out: nothing is written.
   */
  commitStep(step: Omit<StepWrite, "data" | "stepsTtlMs">): Promise<void>;
  /**
   * Publishes progress (visible to `status` and `watch`, and in the task's stream). Fenced like a
   * checkpoint, so it also gates the next model or tool call. Text published before it is
   * written first, so the stream keeps the order things happened in.
   */
  reportProgress(progress: TaskProgress): Promise<void>;
  /**
   * Sends a piece of a model call's text to the task's stream, for clients that follow it live.
   * Batched (see `taskStream.flushMs`) and fenced: once the attempt has lost its lock, nothing
   * more is written. Never throws.
   */
  publishText(piece: TextDeltaEntry): void;
  /** The trace of the task's first attempt (serialised), to link resumed runs to it. */
  firstTrace: string | undefined;
  /** Records the first attempt's trace; persisted with the job's next write (checkpoint, park or failure). */
  setFirstTrace(serialised: string): Promise<void>;
  /** Wakes another parked task now (e.g. the next of a session when this one's turn ends); see {@link AgentWorker.promote}. */
  wake(taskId: string): Promise<boolean>;
  /** Is this task still queued or running? See {@link AgentWorker.isLive}. */
  isLive(taskId: string): Promise<boolean>;
  log: Logger;
}

/** A task BullMQ failed without running its handler (see {@link AgentWorkerOptions.onQueueFailure}). */
export interface QueueFailure {
  taskId: string;
  payload: AgentTaskPayload;
  /** BullMQ's reason, e.g. `job stalled more than allowable limit`. */
  reason: string;
  /** `stalled`: its attempts kept dying; `started`: too many started attempts. */
  kind: "stalled" | "started";
}

/** The reasons BullMQ fails a job for on its own, before the processor runs. */
const QUEUE_FAILURES: Record<string, QueueFailure["kind"]> = {
  "job stalled more than allowable limit": "stalled",
  "job started more than allowable limit": "started",
};

/** What a reconcile pass may ask of the worker it runs in. */
export interface WorkerControl {
  /** Wakes a parked task now; false when it was not parked. */
  promote(taskId: string): Promise<boolean>;
  /** Is this task still queued or running? */
  isLive(taskId: string): Promise<boolean>;
  /** The task ids among these whose job no longer exists. */
  missingTasks(taskIds: string[]): Promise<string[]>;
  /** Tasks BullMQ failed on its own within the last `withinMs` (see {@link AgentWorker.recentQueueFailures}). */
  recentQueueFailures(withinMs: number): Promise<QueueFailure[]>;
}

/**
 * One pass of repair work the worker runs at start and then every `reconcileEveryMs`, e.g. waking
 * the tasks of approvals decided while no worker listened. Redis state is the truth; events only
 * wake. A pass that throws is logged; the next one runs on time.
 */
export type Reconciler = (worker: WorkerControl) => Promise<void>;

/**
 * A stream of wake-ups (e.g. approval decisions on pub/sub): subscribes, calls `wake` with each
 * task id to promote, and returns its unsubscribe. A missed event is caught by a {@link Reconciler}.
 */
export type WakeSource = (wake: (taskId: string) => void) => Promise<() => Promise<void>>;

/** Runs one agent task attempt. Throw AgentryError for failures. */
export type TaskHandler = (execution: TaskExecution) => Promise<TaskOutcome>;

/** Options for {@link AgentWorker}. Durations in ms. */
export interface AgentWorkerOptions {
  /** @defaultValue `redis://127.0.0.1:6379` */
  url?: string;
  /** The key prefix of the queue (shard) this worker consumes. @defaultValue `agentry` */
  prefix?: string;
  /**
   * The deployment's global prefix (`AGENTRY_PREFIX`) when `prefix` is one of several queue
   * shards': tenants' running slots live there, so `maxRunning` holds across shards.
   * @defaultValue `prefix`
   */
  globalPrefix?: string;
  /** @defaultValue `tasks` */
  queueName?: string;
  /** Jobs this worker runs at once. @defaultValue 4 */
  concurrency?: number;
  /** Jobs all workers together run at once (BullMQ global concurrency); unset = no global cap. */
  globalConcurrency?: number;
  /**
   * How long a job's lock lives without renewal. With `stalledIntervalMs` it bounds how soon a
   * SIGKILLed worker's task is picked up by another: at most lockDurationMs + stalledIntervalMs.
   * @defaultValue 10_000
   */
  lockDurationMs?: number;
  /** @defaultValue 5_000 */
  stalledIntervalMs?: number;
  /**
   * The longest a task waits for Redis between tries, after an attempt stopped on Redis being
   * unavailable (the waits double from 1 s up to it; they are started attempts, not attempts).
   * @defaultValue 30_000
   */
  redisRetryMaxMs?: number;
  /** Times a job may stall (its worker died) before it fails. @defaultValue 3 */
  maxStalledCount?: number;
  /** On SIGTERM, how long running steps may take before the rest is handed back. @defaultValue 10_000 */
  shutdownGraceMs?: number;
  /** A running job that reports no progress for this long makes `/healthz` fail. @defaultValue 300_000 */
  progressTimeoutMs?: number;
  handler: TaskHandler;
  logger: Logger;
  /** The agent's name, on every task's finished log line. @defaultValue `assistant` */
  agentName?: string;
  telemetry?: Telemetry;
  /**
   * Called on every worker for every cancellation, also of tasks not running here (a parked task
   * was removed by the client): e.g. to cancel the approvals it waited for. Errors are logged.
   */
  onCancelRequested?: (taskId: string) => Promise<void>;
  /**
   * How far (ms, either way) this host's clock may be from Redis's. Agentry's own leases and
   * expiries run on Redis's time whatever the host's clock says, but BullMQ's delays (parked
   * tasks, retries) run on each worker's host clock: a worker further off refuses to start, and
   * one that drifts further off while it runs stops taking jobs until its clock is back within
   * half of it. 0 turns the check off. @defaultValue 1_000
   */
  maxClockSkewMs?: number;
  /** How often the worker reads Redis's time again. @defaultValue 10_000 */
  clockSyncEveryMs?: number;
  /**
   * How often the worker reads Redis's `maxmemory-policy` and `evicted_keys` again (every master
   * of a cluster). A Redis that evicts keys refuses the start; one that begins to evict while the
   * worker runs stops it taking jobs until `noeviction` is back, and keys it has evicted are
   * logged (`redis-evicted-keys`). @defaultValue 30_000
   */
  evictionCheckEveryMs?: number;
  /** Repair passes run at start and every `reconcileEveryMs`, one after another. @defaultValue none */
  reconcilers?: Reconciler[];
  /** How often the reconcilers run (at least 100). @defaultValue 5_000 */
  reconcileEveryMs?: number;
  /** Wake-ups the worker subscribes to while it runs. @defaultValue none */
  wakeSources?: WakeSource[];
  /**
   * The task streams (progress and model text, `<prefix>:<queue>:<taskId>:stream`): their cap and
   * time to live, and how text is batched (see `TextBatcher`, `TextAppender`). `flushMs`
   * @defaultValue 20; `maxBatchChars` @defaultValue 2_048; `tickMs` @defaultValue 5; limits as in
   * {@link TaskStreamLimits}.
   */
  taskStream?: TaskStreamLimits & { flushMs?: number; maxBatchChars?: number; tickMs?: number };
  /**
   * How long a task's step log lives after its last write (a park until later keeps it until
   * then plus this). A completed task drops its log; a failed, cancelled or removed task's log
   * expires. @defaultValue 7 days
   */
  stepLogTtlMs?: number;
  /** Called for every job that ends (completed or failed), for metrics and audit. */
  onFinished?: (event: {
    taskId: string;
    payload: AgentTaskPayload;
    outcome: "completed" | "failed" | "cancelled";
    durationMs: number;
    error?: AgentryError;
  }) => void;
  /**
   * Called for a task BullMQ failed on its own, without running the handler: its attempts kept
   * stalling (the worker running it died or hung, `maxStalledCount` times), or it started more
   * than `maxStartedAttempts` attempts. Its handler wrote no `failure` entry and did not end its
   * session turn; this is where they are written. Called by the worker that failed the job, once.
   */
  onQueueFailure?: (failure: QueueFailure) => Promise<void>;
  /** Fair share between tenants: slots for `maxRunning` (see {@link FairShare}). */
  fairShare?: {
    /** A running attempt's slot lives this long unless renewed (a killed worker's slot comes back after it). @defaultValue 30_000 */
    slotLeaseMs?: number;
    /** A slot handed to a capped task is kept for it this long while it travels to a worker. @defaultValue 60_000 */
    reservationMs?: number;
    /**
     * How long a task held back by its tenant's cap stays parked if nothing wakes it. It is woken
     * as soon as a slot of its tenant frees (and by the reconcile), so this is only a safety net;
     * long, because every park counts as a started attempt (at most 200).
     * @defaultValue 3_600_000
     */
    cappedParkMs?: number;
    /**
     * How often the worker wakes capped tasks whose tenant has a free slot (e.g. a dead worker's
     * lease ran out, a cap was raised) and prunes waiting entries of jobs that are gone.
     * @defaultValue the worker's `reconcileEveryMs` (5_000)
     */
    reconcileEveryMs?: number;
  };
  _internal?: { clock?: Clock; fairShare?: { rebaseAt?: number } };
}

/** Health of a worker process: Redis answers, the loop runs, running jobs make progress. */
export interface WorkerHealth {
  ok: boolean;
  redis: boolean;
  running: boolean;
  activeJobs: number;
  lastProgressAgoMs: number | null;
  reasons: string[];
}

const SHUTDOWN = Symbol("agentry.shutdown");

/**
 * A fenced write of an attempt's job data with `patch`: with `stepsUntil`, the step log is kept
 * until then; with `progress`, it goes with the data.
 */
type UpdateJob = (
  patch: Partial<AgentJobData>,
  stepsUntil?: number,
  progress?: TaskProgress,
) => Promise<void>;

/**
 * A BullMQ worker for Agentry tasks. It maps handler outcomes onto job states: parked → delayed
 * (slot freed at once), provider 429 → queue-wide rate limit + RateLimitError (no attempt used),
 * retryable error → backoff (honouring `retryAfterMs`), other errors → UnrecoverableError.
 */
export class AgentWorker implements WorkerControl {
  readonly worker: Worker<AgentJobData | FanoutPayload, AgentTaskResult | FanoutResult>;
  readonly queue: Queue;
  readonly prefix: string;
  readonly queueName: string;
  private readonly agentName: string;
  private readonly options: AgentWorkerOptions;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  /** The BullMQ worker's connection: BullMQ does not close a connection it was given. */
  private readonly workerConnection: Redis;
  /** Fair share between tenants: the order's clock and the tenants' slots. */
  readonly fair: FairShare;
  /** Running attempts by lock token (a task may briefly have a stale attempt beside a new one). */
  private readonly active = new Map<
    string,
    { taskId: string; controller: AbortController; lastProgressAt: number; slot?: TenantSlot }
  >();
  /**
   * Keys a completed task's handler asked to drop once BullMQ has moved its job (see
   * `dropWhenCompleted`), by task id; taken by the `completed` event, forgotten on `failed`.
   */
  private readonly dropWhenCompleted = new Map<string, string[]>();
  private fairTimers: NodeJS.Timeout[] = [];
  private rebasing: Promise<void> | undefined;
  private readonly jobWriter: FencedJobWriter;
  /**
   * Appends of model text, on their own connection: the appends of all the tasks streaming in
   * this process within one tick go out as one pipeline. Ordering against progress is kept by
   * `reportProgress`, which waits for pending text to be written first.
   */
  private readonly textConnection: Redis;
  private readonly texts: TextAppender;
  private readonly clock: Clock;
  private shuttingDown = false;
  private closed: Promise<void> | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  /** Stops re-reading Redis's time (`keepClockSynced`). */
  private stopClockSync: (() => void) | undefined;
  /** Redis's time less this host's clock at the last reading (ms) and that reading's round trip; whether that paused the worker; whether it takes jobs yet. */
  private clockSkew = { offsetMs: 0, roundTripMs: 0, paused: false, started: false };
  /** Nodes that evict keys at the last check (the worker takes no jobs while there are any). */
  private evicting: EvictionState[] = [];
  /** Each node's `evicted_keys` at the last check. */
  private readonly evictedKeys = new Map<string, number>();
  private evictionTimer: NodeJS.Timeout | undefined;
  private evictionCheck: Promise<void> | undefined;
  /** Whether BullMQ's worker is paused, for clock skew or eviction (see `syncPause`). */
  private workerPaused = false;
  /** `onQueueFailure` calls under way; close waits for them. */
  private readonly queueFailures = new Set<Promise<void>>();
  /** The reconcile pass under way, so passes never overlap and close waits for it. */
  private reconciling: Promise<void> | undefined;
  private readonly unsubscribes: (() => Promise<void>)[] = [];
  /** Errors of loops that may fail on every turn (BullMQ's, reconcile, renewals): logged with backoff. */
  private readonly errors: RepeatedErrors;

  constructor(options: AgentWorkerOptions) {
    this.options = options;
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
    this.agentName = options.agentName ?? "assistant";
    this.clock = options._internal?.clock ?? systemClock;
    this.errors = new RepeatedErrors(options.logger);
    this.redis = createRedis({ url: options.url, role: "worker", connectionName: "agentry-worker" });
    this.subscriber = createRedis({
      url: options.url,
      role: "subscriber",
      connectionName: "agentry-worker-sub",
    });
    this.redis.on("error", (err) => this.errors.warn("redis connection error", err, { prefix: this.prefix }));
    this.jobWriter = new FencedJobWriter(this.redis, options.taskStream);
    this.fair = new FairShare({
      redis: this.redis,
      prefix: this.prefix,
      globalPrefix: options.globalPrefix ?? this.prefix,
      queueName: this.queueName,
      ...(options.fairShare?.slotLeaseMs === undefined ? {} : { slotLeaseMs: options.fairShare.slotLeaseMs }),
      ...(options.fairShare?.reservationMs === undefined
        ? {}
        : { reservationMs: options.fairShare.reservationMs }),
      _internal: { clock: this.clock, ...options._internal?.fairShare },
    });
    this.textConnection = createRedis({
      url: options.url,
      role: "worker",
      connectionName: "agentry-worker-text",
    });
    this.textConnection.on("error", () => undefined);
    this.texts = new TextAppender(this.textConnection, options.taskStream);
    this.subscriber.on("error", () => undefined);
    this.queue = new Queue(this.queueName, { connection: this.redis, prefix: this.prefix });
    this.queue.on("error", () => undefined);
    const lockDuration = options.lockDurationMs ?? 10_000;
    this.workerConnection = createRedis({
      url: options.url,
      role: "worker",
      connectionName: "agentry-worker-bullmq",
    });
    this.worker = new Worker(this.queueName, (job, token, signal) => this.process(job, token, signal), {
      connection: this.workerConnection,
      prefix: this.prefix,
      concurrency: options.concurrency ?? 4,
      lockDuration,
      stalledInterval: options.stalledIntervalMs ?? 5_000,
      maxStalledCount: options.maxStalledCount ?? 3,
      maxStartedAttempts: TASK_CATALOG["agent.run"].maxStartedAttempts,
      // BullMQ honours the queue-wide pause that a provider 429 sets (`queue.rateLimit`) only for
      // workers that have a limiter: without one every worker keeps taking jobs during the
      // retry-after window. This limiter never throttles by itself (no queue starts that many
      // jobs); it only turns that check on.
      limiter: { max: Number.MAX_SAFE_INTEGER, duration: 1_000 },
      settings: {
        backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) =>
          backoffDelayMs(attemptsMade, TASK_CATALOG["agent.run"].backoffMs, retryAfterOf(err)),
      },
      ...(options.telemetry ? { telemetry: options.telemetry } : {}),
      autorun: false,
    });
    this.worker.on("error", (err) => this.errors.warn("worker error", err, { prefix: this.prefix }));
    // A completed task keeps its result, not its conversation (the session holds it): once BullMQ
    // has moved the job (not before, so a crash in between still resumes), its step log goes, and
    // a checkpoint an older version kept in its data, and the markers its handler named
    // (`dropWhenCompleted`); its stream stays `finishedTtlMs`.
    this.worker.on("failed", (job, err) => {
      if (job?.id !== undefined) this.dropWhenCompleted.delete(job.id);
      const kind = QUEUE_FAILURES[err.message];
      if (job?.id !== undefined && job.name === "agent.run" && kind)
        this.queueFailed(job as Job<AgentJobData, AgentTaskResult>, err.message, kind);
    });
    this.worker.on("completed", (job) => {
      if (job.name !== "agent.run") return;
      void this.dropSteps(job as Job<AgentJobData, AgentTaskResult>).catch((err: unknown) =>
        options.logger.warn(
          { err, taskId: job.id },
          "dropping a completed task's step log failed; it expires",
        ),
      );
    });
    // A lock that could not be renewed (it lapsed, e.g. while Redis was away) means another
    // worker may own the task now: stop the attempt at once. Its fenced writes fail anyway.
    this.worker.on("lockRenewalFailed", (jobIds: string[]) => {
      void this.abortLostAttempts(new Set(jobIds)).catch((err: unknown) =>
        this.errors.warn("lock check failed", err),
      );
    });
  }

  /** A task BullMQ failed before the handler ran: logged, counted and handed to `onQueueFailure`. */
  private queueFailed(
    job: Job<AgentJobData, AgentTaskResult>,
    reason: string,
    kind: QueueFailure["kind"],
  ): void {
    const taskId = job.id as string;
    const payload = job.data.payload;
    const error = new AgentryError("INTERNAL", `BullMQ failed the task: ${reason}`, {
      details: { reason, kind, attemptsStarted: job.attemptsStarted, stalledCounter: job.stalledCounter },
    });
    this.options.logger.error(
      {
        event: "task-failed-by-queue",
        taskId,
        tenant: payload.tenant,
        sessionId: payload.sessionId,
        kind,
        attemptsStarted: job.attemptsStarted,
        stalledCounter: job.stalledCounter,
      },
      kind === "stalled"
        ? "task failed: its attempts kept stalling (the workers running it died or hung)"
        : "task failed: it started more attempts than allowed",
    );
    this.options.onFinished?.({ taskId, payload, outcome: "failed", durationMs: 0, error });
    const handle = this.options.onQueueFailure;
    if (!handle) return;
    const done = handle({ taskId, payload, reason, kind })
      .catch((err: unknown) =>
        this.options.logger.error(
          { event: "task-failure-unrecorded", taskId, err },
          "recording a task BullMQ failed did not complete",
        ),
      )
      .finally(() => this.queueFailures.delete(done));
    this.queueFailures.add(done);
  }

  private async dropSteps(job: Job<AgentJobData, AgentTaskResult>): Promise<void> {
    const taskId = job.id as string;
    const finishedTtlMs = this.options.taskStream?.finishedTtlMs ?? DEFAULT_TASK_STREAM_LIMITS.finishedTtlMs;
    const drop = this.dropWhenCompleted.get(taskId) ?? [];
    this.dropWhenCompleted.delete(taskId);
    // One round trip, each command on its own, one key each (a marker that cannot be dropped,
    // e.g. refused by an ACL, only keeps its TTL; and an ACL grants a multi-key command only when
    // one rule covers all its keys, which audit and session markers do not share): the step log
    // goes; the task stream only shortens its life (`LT`), so followers still reading get the rest.
    const keys = jobKeys(this.prefix, this.queueName, taskId);
    const pipeline = this.redis.pipeline().unlink(keys.steps).pexpire(keys.stream, finishedTtlMs, "LT");
    for (const key of drop) pipeline.unlink(key);
    const failed = ((await pipeline.exec()) ?? []).find(([err]) => err)?.[0];
    if (failed) throw failed;
    if (job.data.checkpoint === undefined) return;
    // BullMQ's own update, which leaves a job already removed (trimmed) alone.
    await job.updateData({ ...job.data, checkpoint: undefined, parked: undefined });
  }

  private async abortLostAttempts(jobIds: Set<string>): Promise<void> {
    for (const [token, attempt] of this.active) {
      if (!jobIds.has(attempt.taskId)) continue;
      const holder = await this.redis.get(jobKeys(this.prefix, this.queueName, attempt.taskId).lock);
      if (holder !== token) {
        this.options.logger.warn(
          { event: "task-lock-lost", taskId: attempt.taskId },
          "task attempt lost its job lock; stopping it",
        );
        attempt.controller.abort(
          new AgentryError("LOCK_LOST", `Task ${attempt.taskId}: the attempt lost its job lock`, {
            retryable: false,
          }),
        );
      }
    }
  }

  /** Starts taking jobs, the wake sources and the periodic reconcile. Resolves once the worker is ready and the first reconcile pass ran. */
  async start(): Promise<void> {
    // A Redis that evicts keys could drop a job lock, a ledger hash or an audit head unseen.
    const states = await assertNoEviction(this.redis);
    this.noteEvictedKeys(states);
    this.noteUnreachable(states);
    // Leases, run slots and expiries are judged by Redis's time, not this host's.
    this.stopClockSync = await keepClockSynced(this.redis, {
      everyMs: this.options.clockSyncEveryMs ?? 10_000,
      onReading: ({ offsetMs, roundTripMs }) => this.onClockReading(offsetMs, roundTripMs),
      onSkew: ({ offsetMs, roundTripMs }) =>
        this.options.logger.warn(
          { event: "clock-skew", offsetMs, roundTripMs, prefix: this.prefix },
          `this host's clock is ${describeSkew(offsetMs)}: Agentry's leases use Redis's time; fix the host's time sync`,
        ),
      onError: (err) => this.errors.warn("clock sync failed", err, { prefix: this.prefix }),
    });
    const maxSkew = this.options.maxClockSkewMs ?? 1_000;
    // Refused only when surely past the limit: the offset is known to within half a round trip.
    if (maxSkew > 0 && Math.abs(this.clockSkew.offsetMs) - this.clockSkew.roundTripMs / 2 > maxSkew) {
      this.stopClockSync();
      throw new AgentryError(
        "INVALID_CONFIG",
        `this host's clock is ${describeSkew(this.clockSkew.offsetMs)}, more than the ${maxSkew} ms allowed ` +
          `(AGENTRY_MAX_CLOCK_SKEW_MS): BullMQ's delays run on host clocks; fix the host's time sync (NTP)`,
        { details: { offsetMs: this.clockSkew.offsetMs, maxClockSkewMs: maxSkew } },
      );
    }
    if (this.options.globalConcurrency) await this.queue.setGlobalConcurrency(this.options.globalConcurrency);
    await this.subscriber.subscribe(cancelChannel(this.prefix));
    this.subscriber.on("message", (_channel: string, taskId: string) => {
      for (const attempt of this.active.values()) {
        if (attempt.taskId === taskId)
          attempt.controller.abort(new AgentryError("CANCELLED", `Task ${taskId} was cancelled`));
      }
      void this.options
        .onCancelRequested?.(taskId)
        .catch((err: unknown) => this.options.logger.warn({ err, taskId }, "cancellation follow-up failed"));
    });
    for (const source of this.options.wakeSources ?? []) {
      this.unsubscribes.push(
        await source((taskId) => {
          void this.promote(taskId).catch((err: unknown) =>
            this.options.logger.warn({ err, taskId }, "wake-up failed"),
          );
        }),
      );
    }
    void this.worker.run().catch((err: unknown) => this.options.logger.error({ err }, "worker loop ended"));
    // From here a clock reading past the allowed skew pauses the worker (BullMQ's loop ends while
    // paused, so `isRunning` cannot tell).
    this.clockSkew.started = true;
    await this.worker.waitUntilReady();
    if ((this.options.reconcilers ?? []).length > 0) {
      await this.reconcile();
      this.reconcileTimer = setInterval(
        () => void this.reconcile(),
        Math.max(100, this.options.reconcileEveryMs ?? 5_000),
      );
      this.reconcileTimer.unref();
    }
    const evictionEveryMs = this.options.evictionCheckEveryMs ?? 30_000;
    if (evictionEveryMs > 0) {
      this.evictionTimer = setInterval(() => void this.checkEviction(), Math.max(100, evictionEveryMs));
      this.evictionTimer.unref();
    }
    this.startFairTimers();
  }

  /** True while the worker takes no jobs because a Redis node that holds its keys evicts keys. */
  get evictionPaused(): boolean {
    return this.evicting.length > 0;
  }

  /**
   * Reads every node's eviction setting again: one that evicts keys stops the worker taking jobs
   * (its running tasks go on) until `noeviction` is back; keys evicted since the last check are
   * logged as an error, since they may have been Agentry's.
   */
  private checkEviction(): Promise<void> {
    this.evictionCheck ??= (async () => {
      try {
        const states = await readEvictionStates(this.redis);
        this.noteEvictedKeys(states);
        this.noteUnreachable(states);
        const evicting = evictingNodes(states);
        const was = this.evictionPaused;
        if (this.shuttingDown) return;
        this.evicting = evicting;
        if (this.evictionPaused === was) return;
        if (this.evictionPaused)
          this.options.logger.error(
            {
              event: "eviction-paused",
              nodes: evicting.map((n) => `${n.node} ${n.policy ?? "?"}`),
              prefix: this.prefix,
            },
            `${describeEviction(evicting)}: taking no jobs until maxmemory-policy is noeviction again`,
          );
        else
          this.options.logger.info(
            { event: "eviction-resumed", prefix: this.prefix },
            "Redis evicts no keys again (maxmemory-policy noeviction): taking jobs again",
          );
        this.syncPause();
      } catch (err) {
        if (!this.shuttingDown) this.errors.warn("eviction check failed", err, { prefix: this.prefix });
      }
    })().finally(() => (this.evictionCheck = undefined));
    return this.evictionCheck;
  }

  /**
   * Logs the Cluster masters whose eviction setting could not be read (down, or mid-failover):
   * the worker runs on the others and reads them again at the next check. Repeats are counted.
   */
  private noteUnreachable(states: readonly EvictionState[]): void {
    for (const { node, unreachable } of unreachableNodes(states))
      this.errors.warn(
        `Redis at ${node} did not answer: its eviction setting is read again at the next check`,
        unreachable,
        { event: "redis-node-unreachable", node, prefix: this.prefix },
      );
  }

  /** Logs keys a node evicted since the last reading (at start: since the node started). */
  private noteEvictedKeys(states: readonly EvictionState[]): void {
    for (const { node, evictedKeys } of states) {
      if (evictedKeys === undefined) continue;
      const before = this.evictedKeys.get(node);
      this.evictedKeys.set(node, evictedKeys);
      if (before === undefined ? evictedKeys === 0 : evictedKeys <= before) continue;
      const evicted = evictedKeys - (before ?? 0);
      const since = before === undefined ? "since it started" : "since the last check";
      this.options.logger[before === undefined ? "warn" : "error"](
        { event: "redis-evicted-keys", node, evicted, prefix: this.prefix },
        `Redis at ${node} evicted ${evicted} keys ${since}: if Agentry's were among them, a lock, a budget or an audit head may be gone; run agentry audit verify`,
      );
    }
  }

  /** Why the worker takes no jobs now. */
  private get pauseReasons(): ("clock-skew" | "eviction")[] {
    return [
      ...(this.clockSkew.paused ? (["clock-skew"] as const) : []),
      ...(this.evictionPaused ? (["eviction"] as const) : []),
    ];
  }

  /** Pauses BullMQ's worker while there is a reason to, resumes it when there is none. */
  private syncPause(): void {
    const pause = this.pauseReasons.length > 0;
    if (pause === this.workerPaused || this.shuttingDown) return;
    this.workerPaused = pause;
    if (pause) void this.worker.pause(true).catch((err: unknown) => this.errors.warn("pause failed", err));
    else void this.worker.resume();
  }

  /** Redis's time less this host's clock at the last reading, in ms (`agentry_clock_offset_seconds`). */
  get clockOffsetMs(): number {
    return this.clockSkew.offsetMs;
  }

  /** True while the worker takes no jobs because its host clock is too far from Redis's. */
  get clockSkewPaused(): boolean {
    return this.clockSkew.paused;
  }

  /**
   * A clock reading while the worker runs: past `maxClockSkewMs`, stop taking jobs (BullMQ would
   * run parked tasks early or late by the offset); take them again once the clock is back within
   * half of it, so a clock that hovers at the limit does not pause and resume at every reading.
   * A reading knows the offset to within half its round trip (long on a loaded host): it pauses
   * the worker only when the offset is surely past the limit, and resumes it only when surely
   * within half of it.
   */
  private onClockReading(offsetMs: number, roundTripMs: number): void {
    this.clockSkew.offsetMs = offsetMs;
    this.clockSkew.roundTripMs = roundTripMs;
    const maxSkew = this.options.maxClockSkewMs ?? 1_000;
    const margin = roundTripMs / 2;
    const over =
      maxSkew > 0 &&
      (this.clockSkew.paused
        ? Math.abs(offsetMs) + margin > maxSkew / 2
        : Math.abs(offsetMs) - margin > maxSkew);
    if (over === this.clockSkew.paused || this.shuttingDown || !this.clockSkew.started) return;
    this.clockSkew.paused = over;
    if (over) {
      this.options.logger.error(
        { event: "clock-skew-paused", offsetMs, maxClockSkewMs: maxSkew, prefix: this.prefix },
        `this host's clock is ${describeSkew(offsetMs)}, more than the ${maxSkew} ms allowed: taking no jobs until it is back`,
      );
    } else {
      this.options.logger.info(
        { event: "clock-skew-resumed", offsetMs, prefix: this.prefix },
        "this host's clock is back within half the allowed skew: taking jobs again",
      );
    }
    this.syncPause();
  }

  /**
   * A time of the deployment's clock (Redis's) as this host's clock tells it, at least 1 ms
   * ahead: BullMQ's delays run on host clocks, so a park until `until` is handed to BullMQ as the
   * same wait from this host's now, right as long as the workers' hosts agree with each other.
   */
  private hostTime(until: number): number {
    return Date.now() + Math.max(until - this.clock.now(), 1);
  }

  /** Runs one pass of every reconciler (none when a pass is still under way); failures are logged. */
  private reconcile(): Promise<void> {
    this.reconciling ??= (async () => {
      for (const reconciler of this.options.reconcilers ?? []) {
        if (this.shuttingDown) break;
        await reconciler(this).catch((err: unknown) =>
          this.errors.warn("reconcile failed", err, { prefix: this.prefix }),
        );
      }
    })().finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  /** Renews the slots of running attempts, and periodically wakes capped tasks whose tenant has room. */
  private startFairTimers(): void {
    const renew = setInterval(
      () => {
        const slots = [...this.active.values()].flatMap((a) => (a.slot ? [a.slot] : []));
        void this.fair
          .renew(slots)
          .catch((err: unknown) => this.errors.warn("renewing tenant slots failed", err));
      },
      Math.max(100, Math.floor(this.fair.leaseMs / 3)),
    );
    const reconcile = setInterval(
      () => {
        void this.reconcileTenants().catch((err: unknown) =>
          this.errors.warn("tenant reconcile failed", err, { prefix: this.prefix }),
        );
      },
      Math.max(100, this.options.fairShare?.reconcileEveryMs ?? this.options.reconcileEveryMs ?? 5_000),
    );
    for (const timer of [renew, reconcile]) timer.unref();
    this.fairTimers = [renew, reconcile];
  }

  /**
   * Wakes tasks held back by their tenant's cap when the tenant has a free slot (a slot whose
   * worker died has lapsed, or the cap was raised or removed), and drops waiting entries whose
   * job is gone. Every worker runs it periodically; it is safe to run anywhere, any time.
   */
  async reconcileTenants(): Promise<void> {
    for (const tenant of await this.fair.cappedTenants())
      await this.wakeCapped(tenant, (await this.fair.release(tenant)).wake);
    for (const tenant of await this.fair.tenants()) await this.fair.pruneWaiting(tenant);
  }

  /** Promotes capped tasks that were handed a slot; a slot handed to a task that no longer exists goes to the next. */
  private async wakeCapped(tenant: string, ids: string[]): Promise<void> {
    let next = ids;
    for (let round = 0; next.length > 0 && round < 10; round++) {
      const gone: string[] = [];
      for (const id of next) if ((await this.wake(id)) === "missing") gone.push(id);
      next = [];
      for (const id of gone) next.push(...(await this.fair.forget(tenant, id)));
    }
  }

  /**
   * Graceful shutdown: stop taking jobs; running steps get `shutdownGraceMs` to finish; what
   * is still running after that is handed back to the queue at once (not after a stall timeout).
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.shuttingDown = true;
      for (const timer of this.fairTimers) clearInterval(timer);
      clearInterval(this.reconcileTimer);
      this.stopClockSync?.();
      clearInterval(this.evictionTimer);
      for (const unsubscribe of this.unsubscribes.splice(0)) await unsubscribe().catch(() => undefined);
      await this.reconciling;
      await this.evictionCheck;
      const closing = this.worker.close();
      const grace = this.options.shutdownGraceMs ?? 10_000;
      const timer = setTimeout(() => {
        for (const { controller } of this.active.values()) controller.abort(SHUTDOWN);
      }, grace);
      await closing;
      clearTimeout(timer);
      await Promise.all([...this.queueFailures]);
      await this.queue.close();
      await this.subscriber.quit().catch(() => this.subscriber.disconnect());
      await this.workerConnection.quit().catch(() => this.workerConnection.disconnect());
      await this.texts.flush().catch(() => undefined);
      await this.textConnection.quit().catch(() => this.textConnection.disconnect());
      await this.redis.quit().catch(() => this.redis.disconnect());
    })();
    return this.closed;
  }

  /**
   * Wakes a parked task now (e.g. its approval was decided). Benign when it is not parked.
   * A wake that arrives while the task is still running (about to park) is not lost: the flag
   * set first is seen by the worker right after it parks the job.
   */
  async promote(taskId: string): Promise<boolean> {
    return (await this.wake(taskId)) === "promoted";
  }

  private async wake(taskId: string): Promise<"promoted" | "not-delayed" | "missing"> {
    await this.redis.set(wakeKey(this.prefix, taskId), "1", "EX", 300);
    const job = await this.queue.getJob(taskId);
    if (!job) return "missing";
    try {
      await job.promote();
      return "promoted";
    } catch {
      // Not delayed any more (already promoted by another worker, or running): nothing to do.
      return "not-delayed";
    }
  }

  /** Is this task still queued, running or parked (its job exists and has not finished)? */
  async isLive(taskId: string): Promise<boolean> {
    const job = await this.queue.getJob(taskId);
    return job !== undefined && !["completed", "failed"].includes(await job.getState());
  }

  /** The task ids among `taskIds` whose job no longer exists (removed, cancelled), in one round trip. */
  async missingTasks(taskIds: string[]): Promise<string[]> {
    if (taskIds.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of taskIds) pipeline.exists(jobKeys(this.prefix, this.queueName, id).job);
    const replies = (await pipeline.exec()) ?? [];
    return taskIds.filter((_, i) => replies[i]?.[1] === 0);
  }

  /**
   * Tasks BullMQ failed on its own (see {@link AgentWorkerOptions.onQueueFailure}) that finished
   * within the last `withinMs`, at most `limit` of them, oldest first: what a reconcile pass
   * checks was recorded, should the worker that failed one have died before recording it.
   */
  async recentQueueFailures(withinMs: number, limit = 500): Promise<QueueFailure[]> {
    const ids = await this.redis.zrangebyscore(
      keySpace(this.prefix).key(this.queueName, "failed"),
      this.clock.now() - withinMs,
      "+inf",
      "LIMIT",
      0,
      limit,
    );
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids)
      pipeline.hmget(jobKeys(this.prefix, this.queueName, id).job, "name", "failedReason", "data");
    const replies = (await pipeline.exec()) ?? [];
    return ids.flatMap((taskId, i) => {
      const [name, reason, data] = (replies[i]?.[1] ?? []) as (string | null)[];
      const kind = reason ? QUEUE_FAILURES[reason] : undefined;
      if (name !== "agent.run" || !reason || !kind || !data) return [];
      let json: unknown;
      try {
        json = JSON.parse(data);
      } catch {
        return [];
      }
      const parsed = agentJobDataSchema.safeParse(json);
      return parsed.success ? [{ taskId, payload: parsed.data.payload, reason, kind }] : [];
    });
  }

  /** Health for `/healthz`. */
  async health(): Promise<WorkerHealth> {
    const reasons: string[] = [];
    const redis = await withTimeout(this.redis.ping(), 2_000, "redis ping").then(
      (pong) => pong === "PONG",
      () => false,
    );
    if (!redis) reasons.push("redis does not answer");
    const running = this.worker.isRunning() && !this.shuttingDown;
    if (!running) reasons.push("worker is not running");
    if (this.clockSkew.paused)
      reasons.push(`taking no jobs: this host's clock is ${describeSkew(this.clockSkew.offsetMs)}`);
    if (this.evictionPaused) reasons.push(`taking no jobs: ${describeEviction(this.evicting)}`);
    const now = this.clock.now();
    const lastProgress = [...this.active.values()].reduce(
      (min, a) => Math.min(min, a.lastProgressAt),
      Number.POSITIVE_INFINITY,
    );
    const lastProgressAgoMs = Number.isFinite(lastProgress) ? now - lastProgress : null;
    if (lastProgressAgoMs !== null && lastProgressAgoMs > (this.options.progressTimeoutMs ?? 300_000)) {
      reasons.push(`a running task has made no progress for ${Math.round(lastProgressAgoMs / 1000)} s`);
    }
    return {
      ok: reasons.length === 0,
      redis,
      running,
      activeJobs: this.active.size,
      lastProgressAgoMs,
      reasons,
    };
  }

  private async process(
    job: Job<AgentJobData | FanoutPayload, AgentTaskResult | FanoutResult>,
    token: string | undefined,
    bullSignal: AbortSignal | undefined,
  ): Promise<AgentTaskResult | FanoutResult> {
    if (this.workerPaused && token) {
      // BullMQ's blocking wait, under way when the worker paused, still takes the job it was
      // waiting for: hand it back untouched for a worker that takes jobs.
      await job.moveToWait(token);
      this.options.logger.info(
        { event: "task-handed-back", taskId: job.id, pausedFor: this.pauseReasons },
        "task handed back untouched: this worker takes no jobs while paused",
      );
      throw new WaitingError();
    }
    if (job.name === "agent.fanout") return this.collectGroup(job as Job<FanoutPayload, FanoutResult>);
    return this.runTask(job as Job<AgentJobData, AgentTaskResult>, token, bullSignal);
  }

  private async runTask(
    job: Job<AgentJobData, AgentTaskResult>,
    token: string | undefined,
    bullSignal: AbortSignal | undefined,
  ): Promise<AgentTaskResult> {
    const taskId = job.id as string;
    const payload = job.data.payload;
    const log = this.options.logger.child({
      taskId,
      tenant: payload.tenant,
      sessionId: payload.sessionId,
      attempt: job.attemptsStarted,
    });
    if (!token) throw new AgentryError("INTERNAL", `Task ${taskId} was delivered without a lock token`);
    const controller = new AbortController();
    bullSignal?.addEventListener("abort", () => controller.abort(bullSignal.reason), { once: true });
    const entry: { taskId: string; controller: AbortController; lastProgressAt: number; slot?: TenantSlot } =
      { taskId, controller, lastProgressAt: this.clock.now() };
    this.active.set(token, entry);
    const startedAt = this.clock.now();
    const keys = jobKeys(this.prefix, this.queueName, taskId);
    const fence = FencedJobWriter.fenceOf(keys, token);
    let data = job.data;
    const texts = new TextBatcher({
      write: (pieces) => this.texts.append(keys, token, pieces),
      ...(this.options.taskStream?.flushMs === undefined ? {} : { flushMs: this.options.taskStream.flushMs }),
      ...(this.options.taskStream?.maxBatchChars === undefined
        ? {}
        : { maxChars: this.options.taskStream.maxBatchChars }),
      onError: (err) =>
        log.warn(
          { event: "task-text-dropped", err },
          "could not write model text to the task stream; live readers miss it",
        ),
      onFenced: () =>
        log.warn(
          { event: "task-text-fenced" },
          "task attempt lost its job lock; its model text is not streamed",
        ),
    });
    const stepsTtlMs = this.options.stepLogTtlMs ?? DEFAULT_STEP_LOG_TTL_MS;
    /** The data as written: a change (e.g. the first trace) rides with the next step write. */
    let written = data;
    const update: UpdateJob = async (patch, stepsUntil, progress) => {
      data = { ...data, ...patch };
      if (stepsUntil === undefined && progress === undefined)
        await this.jobWriter.write(keys, taskId, token, "data", data);
      else
        await this.jobWriter.commit(keys, taskId, token, {
          data,
          ...(stepsUntil === undefined
            ? {}
            : { stepsTtlMs: Math.max(stepsUntil - this.clock.now(), 0) + stepsTtlMs }),
          ...(progress === undefined ? {} : { progress }),
        });
      written = data;
    };
    try {
      // The tenant's cap first: a task over it waits parked, holding no slot, until one frees.
      const admission = await this.fair.admit({
        taskId,
        tenant: payload.tenant,
        attempt: token,
        priority: job.priority ?? 0,
      });
      if (!admission.admitted) {
        const until = this.clock.now() + (this.options.fairShare?.cappedParkMs ?? 3_600_000);
        await update({ parked: { reason: "tenant_capped", until }, parkCount: (data.parkCount ?? 0) + 1 });
        await job.moveToDelayed(this.hostTime(until), token);
        if ((await this.redis.del(wakeKey(this.prefix, taskId))) === 1)
          await job.promote().catch(() => undefined);
        log.info({ event: "task-capped" }, "tenant at its maxRunning: task waits for a slot");
        throw new DelayedError();
      }
      entry.slot = admission.slot;
      if (await this.redis.exists(cancelKey(this.prefix, taskId))) {
        throw new AgentryError("CANCELLED", `Task ${taskId} was cancelled`);
      }
      // A first start has no step log: only a later start reads it.
      const steps =
        job.attemptsStarted > 1
          ? (await this.redis.lrange(keys.steps, 0, -1)).map((e) => JSON.parse(e) as unknown)
          : [];
      log.info(
        { event: "task-started", resumed: steps.length > 0 || data.checkpoint !== undefined },
        "task started",
      );
      const outcome = await this.options.handler({
        taskId,
        payload,
        checkpoint: data.checkpoint,
        steps,
        parked: data.parked,
        attemptsStarted: job.attemptsStarted,
        finalAttempt: (job.opts.attempts ?? 1) - job.attemptsMade - 1 <= 0,
        signal: controller.signal,
        fence,
        firstTrace: data.firstTrace,
        // Kept with the job's next write (the first checkpoint follows at once, and a park or a
        // failure writes too): a separate write here cost one script call per task. A task that
        // dies before any write simply records the next attempt's trace as its first.
        setFirstTrace: (firstTrace) => {
          data = { ...data, firstTrace };
          return Promise.resolve();
        },
        saveCheckpoint: async (checkpoint) => {
          entry.lastProgressAt = this.clock.now();
          await update({ checkpoint });
        },
        commitStep: async (step) => {
          entry.lastProgressAt = this.clock.now();
          await texts.flush();
          // A change of the data (the first trace) rides with the step.
          const changed = data !== written;
          await this.jobWriter.commit(keys, taskId, token, {
            ...step,
            ...(changed ? { data } : {}),
            ...(step.entry === undefined ? {} : { stepsTtlMs }),
          });
          written = data;
        },
        reportProgress: async (progress) => {
          entry.lastProgressAt = this.clock.now();
          await texts.flush();
          await this.jobWriter.write(keys, taskId, token, "progress", progress);
        },
        wake: (other) => this.promote(other),
        isLive: (other) => this.isLive(other),
        publishText: (piece) => texts.push(piece),
        log,
      });
      if (outcome.type === "park") {
        // The step log must outlive the park.
        await update({ parked: outcome.parked, parkCount: (data.parkCount ?? 0) + 1 }, outcome.parked.until);
        await job.moveToDelayed(this.hostTime(outcome.parked.until), token);
        if ((await this.redis.del(wakeKey(this.prefix, taskId))) === 1)
          await job.promote().catch(() => undefined);
        log.info(
          { event: "task-parked", reason: outcome.parked.reason, until: outcome.parked.until },
          "task parked",
        );
        throw new DelayedError();
      }
      if (data.parked) await update({ parked: undefined });
      const durationMs = this.clock.now() - startedAt;
      log.info(
        {
          event: "task-completed",
          agent: this.agentName,
          success: true,
          durationMs,
          steps: outcome.result.steps,
          costMicroUsd: outcome.result.costMicroUsd,
        },
        `agent ${this.agentName} completed task`,
      );
      this.options.onFinished?.({ taskId, payload, outcome: "completed", durationMs });
      if (outcome.dropWhenCompleted?.length) this.dropWhenCompleted.set(taskId, outcome.dropWhenCompleted);
      return outcome.result;
    } catch (thrown) {
      if (thrown instanceof DelayedError) throw thrown;
      if (controller.signal.aborted && controller.signal.reason === SHUTDOWN) {
        // Hand the task back now; its checkpoint lets any worker continue it.
        await job.moveToWait(token);
        log.info({ event: "task-handed-back" }, "task handed back on shutdown");
        throw new WaitingError();
      }
      const err = AgentryError.from(
        controller.signal.aborted && AgentryError.isInstance(controller.signal.reason)
          ? controller.signal.reason
          : thrown,
      );
      const durationMs = this.clock.now() - startedAt;
      if (err.code === "LOCK_LOST") {
        // Another attempt owns the task now: this one leaves the job as it is (no failure, no
        // retry: a WaitingError makes BullMQ touch nothing) and reports nothing as finished.
        controller.abort(err);
        log.warn(
          { event: "task-attempt-fenced", err: err.message, durationMs },
          "task attempt lost its job lock; it commits nothing more",
        );
        throw new WaitingError();
      }
      if (err.code === "PROVIDER_RATE_LIMITED") {
        const wait = err.retryAfterMs ?? 1_000;
        await this.queue.rateLimit(wait);
        log.warn(
          { event: "task-rate-limited", retryAfterMs: wait },
          "provider rate limit: queue paused for all workers",
        );
        throw new RateLimitError();
      }
      // A task that waits for Redis keeps its error with the park, in one write.
      if (
        err.code === "REDIS_UNAVAILABLE" &&
        (await this.waitForRedis(job, token, data.redisWaits, update, log, err))
      )
        throw new DelayedError();
      await update({ error: err.toData() }).catch(() => undefined);
      const attemptsLeft = (job.opts.attempts ?? 1) - job.attemptsMade - 1;
      if (err.code === "REDIS_UNAVAILABLE" && attemptsLeft <= 0) {
        // Redis took not even the park, and failing the task now would end it unaudited (its
        // handler ended nothing: see waitForRedis). BullMQ is left to find its lock lapsed and
        // start it again (its stalled check), as for any attempt Redis lost sight of.
        log.warn(
          { event: "task-attempt-stranded", err: err.message },
          "Redis unavailable on the task's last attempt: left to BullMQ's stalled check",
        );
        throw new WaitingError();
      }
      if (err.retryable && attemptsLeft > 0) {
        log.warn(
          { event: "task-retry", code: err.code, err: err.message, attemptsLeft },
          "task attempt failed; will retry",
        );
        throw new RetryableTaskError(err);
      }
      const outcome = err.code === "CANCELLED" ? "cancelled" : "failed";
      log.error(
        {
          event: "task-failed",
          agent: this.agentName,
          success: false,
          code: err.code,
          err: err.message,
          durationMs,
        },
        `agent ${this.agentName} failed task`,
      );
      this.options.onFinished?.({ taskId, payload, outcome, durationMs, error: err });
      throw new UnrecoverableError(`[${err.code}] ${err.message}`);
    } finally {
      await texts.close();
      this.active.delete(token);
      if (entry.slot) await this.releaseSlot(entry.slot, log);
    }
  }

  /**
   * Parks a task whose attempt stopped on Redis being unavailable, to try again after a wait that
   * doubles with each such stop (up to `redisRetryMaxMs`): a started attempt, as a park is, not
   * one of its attempts, which a failover or an outage longer than their backoff (15 s) would
   * use up, failing tasks that had done nothing wrong. False when Redis takes not even the park
   * (the attempt is then retried as any retryable failure, or BullMQ's stalled check returns it).
   */
  private async waitForRedis(
    job: Job<AgentJobData, AgentTaskResult>,
    token: string,
    waitedBefore: number | undefined,
    update: UpdateJob,
    log: Logger,
    err: AgentryError,
  ): Promise<boolean> {
    const entry = TASK_CATALOG["agent.run"];
    const redisWaits = (waitedBefore ?? 0) + 1;
    const waitMs = Math.min(
      backoffDelayMs(redisWaits, entry.backoffMs),
      this.options.redisRetryMaxMs ?? entry.redisWaitMaxMs,
    );
    const until = this.clock.now() + waitMs;
    try {
      // The step log must outlive the park; the progress says why the task waits.
      const step = (job.progress as Partial<TaskProgress> | undefined)?.step ?? 0;
      await update(
        { parked: { reason: "redis_unavailable", until }, redisWaits, error: err.toData() },
        until,
        {
          step,
          phase: "parked",
          reason: "redis_unavailable",
        },
      );
      await job.moveToDelayed(this.hostTime(until), token);
    } catch {
      return false;
    }
    log.warn(
      {
        event: "task-waits-for-redis",
        err: err.message,
        waitMs,
        redisWaits,
        attemptsStarted: job.attemptsStarted,
      },
      "Redis unavailable: task waits and tries again, keeping its attempts",
    );
    return true;
  }

  /** Frees an attempt's slot and wakes the capped tasks it hands on to. A failure only logs: the lease frees the slot anyway. */
  private async releaseSlot(slot: TenantSlot, log: Logger): Promise<void> {
    try {
      const released = await this.fair.release(slot.tenant, slot);
      if (released.rebaseDue) this.rebaseClock();
      await this.wakeCapped(slot.tenant, released.wake);
    } catch (err) {
      log.warn({ err }, "releasing the tenant slot failed; its lease frees it");
    }
  }

  /** Rebases the fair order's clock once at a time per process (the script itself is safe to race). */
  private rebaseClock(): void {
    this.rebasing ??= this.fair
      .rebase()
      .then((moved) => {
        if (moved > 0)
          this.options.logger.info(
            { event: "fair-clock-rebased", priorities: moved },
            "fair-share clock rebased",
          );
      })
      .catch((err: unknown) => this.options.logger.warn({ err }, "fair-share clock rebase failed"))
      .finally(() => {
        this.rebasing = undefined;
      });
  }

  /** A fan-out group finishes once all its children have: collect their results. */
  private async collectGroup(job: Job<FanoutPayload, FanoutResult>): Promise<FanoutResult> {
    const values = await job.getChildrenValues<AgentTaskResult>();
    const failures = await job.getIgnoredChildrenFailures();
    const childId = (key: string) => key.slice(key.lastIndexOf(":") + 1);
    const children: FanoutResult["children"] = [
      ...Object.entries(values).map(([key, result]) => ({
        taskId: childId(key),
        status: "completed" as const,
        result,
      })),
      ...Object.entries(failures).map(([key, error]) => ({
        taskId: childId(key),
        status: "failed" as const,
        error,
      })),
    ];
    // A child the group names that neither completed nor failed was never created: BullMQ adds a
    // flow in one MULTI and reads only the parent's reply, so a child whose add failed there (the
    // server's script cache lost) leaves the parent with fewer dependencies. Reported, not hidden.
    const seen = new Set(children.map((c) => c.taskId));
    for (const taskId of job.data.taskIds ?? [])
      if (!seen.has(taskId))
        children.push({
          taskId,
          status: "failed",
          error: `[REDIS_UNAVAILABLE] task ${taskId} was never created`,
        });
    const order = new Map((job.data.taskIds ?? []).map((id, i) => [id, i]));
    children.sort((a, b) => (order.get(a.taskId) ?? Infinity) - (order.get(b.taskId) ?? Infinity));
    return { groupId: job.data.groupId, children };
  }
}

/** A retryable failure: the message carries the code; `retryAfterMs` feeds the backoff. */
class RetryableTaskError extends Error {
  readonly retryAfterMs: number | undefined;
  constructor(err: AgentryError) {
    super(`[${err.code}] ${err.message}`);
    this.name = "RetryableTaskError";
    this.retryAfterMs = err.retryAfterMs;
  }
}

function retryAfterOf(err: Error | undefined): number | undefined {
  const value = (err as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
  return typeof value === "number" ? value : undefined;
}
