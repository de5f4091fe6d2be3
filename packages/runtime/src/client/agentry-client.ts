import { FlowProducer, Queue, QueueEvents, type Job, type Telemetry } from "bullmq";
import type { Redis } from "ioredis";
import type { z } from "zod";
import {
  AgentryError,
  awaitReplicas,
  createRedis,
  DEFAULT_KEY_PREFIX,
  duplicateRedis,
  isAgentryError,
  isNoScriptError,
  isTransientRedisError,
  keySpace,
  loadScripts,
  newId,
  pinShardCount,
  shardOfSession,
  shardPrefixes,
  sleep,
  systemClock,
  tenantOwnedId,
  waitForReady,
  type Clock,
} from "@agentry/core";
import {
  DEFAULT_QUEUE_NAME,
  MAX_PROMPT_CHARS,
  agentTaskPayloadSchema,
  jobOptionsFor,
  submitTaskInputSchema,
  type AgentJobData,
  type AgentTaskPayload,
  type AgentTaskResult,
  type FanoutPayload,
  type FanoutResult,
  type SubmitTaskInput,
} from "../tasks/catalog.js";
import { isGroupId, isTaskId, taskIdFor } from "../tasks/task-ids.js";
import { errorFromFailedReason, statusOfJob, type TaskStatus } from "./task-status.js";
import { SubmitClaims, type HeldClaim } from "./submit-claims.js";
import { cancelChannel, cancelKey, wakeKey } from "../tasks/cancellation.js";
import type { TaskProgress } from "../tasks/progress.js";
import { FairShare, type FairStamp } from "../fair/fair-share.js";
import { mergeTenantLoads, type TenantLoad, type TenantSettingsPatch } from "../fair/tenant-settings.js";
import {
  parseTaskStreamEntry,
  parseTaskStreamNotice,
  taskStreamKey,
  type TaskStreamNotice,
  type TaskStreamRecord,
  type TextDeltaEntry,
} from "../stream/task-stream.js";
import { TaskStreamWakeups } from "../stream/task-stream-wakeups.js";

/**
 * The part of a session-turn store the client needs: registering submit order. The client passes
 * tenant-qualified session ids (`tenantOwnedId(tenant, "session", id)`), as the worker does.
 */
export interface SessionOrder {
  enqueue(sessionId: string, taskId: string): Promise<void>;
  /** `endTurn`: the task is not running, so a turn it holds ends too. */
  remove(sessionId: string, taskId: string, options?: { endTurn?: boolean }): Promise<void>;
  /** The task whose turn it is. */
  head(sessionId: string): Promise<string | null>;
}

/** Who is submitting. The tenant always comes from credentials, never from the payload. */
export interface Caller {
  tenant: string;
  /** @defaultValue the input's `userId`, else `anonymous` */
  userId?: string;
}

/** Options for {@link AgentryClient}. */
export interface AgentryClientOptions {
  /** A Redis connection (fail-fast producer settings recommended); or `url`. */
  redis?: Redis;
  /** @defaultValue `redis://127.0.0.1:6379` */
  url?: string;
  /** Key prefix shared with the workers (`AGENTRY_PREFIX`). @defaultValue `agentry` */
  prefix?: string;
  /**
   * Queue shards (`AGENTRY_SHARDS`): the queue is split into this many BullMQ queues, each under
   * the prefix `shardPrefix(prefix, i, shards)`; a task goes to the shard of its (tenant,
   * session). Must match the workers'. @defaultValue 1 (the queue under `prefix` itself)
   */
  shards?: number;
  /** @defaultValue `tasks` */
  queueName?: string;
  /**
   * Registers session order at submit time, so a session's tasks run in submit order. Session
   * turns live on the session's queue shard: with more than one shard, give a function from a
   * shard's prefix to that shard's order (`(prefix) => new RedisSessionTurns({redis, prefix})`).
   */
  sessionOrder?: SessionOrder | ((shardPrefix: string) => SessionOrder);
  /** bullmq-otel telemetry instance: the producer span is propagated into the job. */
  telemetry?: Telemetry;
  /**
   * Fair share between tenants: each task is enqueued with a BullMQ priority from its tenant's
   * virtual clock, so one tenant's flood never starves another. `false` enqueues first in first
   * out (`AGENTRY_FAIR_SHARE=off`); tenants' `maxRunning` caps hold either way.
   * @defaultValue true
   */
  fairShare?: boolean;
  /**
   * Replicas that must hold a submitted task before `submit` returns (Redis `WAIT` on the
   * connection to the task's master, `AGENTRY_REDIS_WAIT_REPLICAS`): replication is asynchronous,
   * and without it a master that dies right after a submit can lose the task to the replica that
   * replaces it. Fewer within `timeoutMs` (1 s by default): `submit` throws retryable
   * `REDIS_UNAVAILABLE` with the task's id; the task is enqueued, and a submit again with the
   * same idempotency key is the same task. @defaultValue off
   */
  waitReplicas?: { replicas: number; timeoutMs?: number };
  _internal?: { clock?: Clock };
}

/** A submitted task. */
export interface SubmittedTask {
  taskId: string;
  sessionId: string;
  /** True when an idempotency key matched an existing task: nothing new was enqueued. */
  deduplicated: boolean;
}

/** Events of one task, in order. Ends after `completed` or `failed`. */
export type TaskEvent =
  | { type: "progress"; taskId: string; progress: TaskProgress }
  | { type: "completed"; taskId: string; result: AgentTaskResult }
  | { type: "failed"; taskId: string; error: ReturnType<typeof errorFromFailedReason> };

/** What {@link AgentryClient.follow} yields: the task's stream entries as they come, then its end. */
export type TaskFollowEvent =
  | { type: "progress"; taskId: string; id: string; progress: TaskProgress }
  | ({ type: "delta"; taskId: string; id: string } & TextDeltaEntry)
  | { type: "completed"; taskId: string; result: AgentTaskResult }
  | { type: "failed"; taskId: string; error: ReturnType<typeof errorFromFailedReason> };

/** One queue shard as the client sees it. */
export interface ClientShard {
  /** 0 .. shards - 1. */
  readonly index: number;
  /** The shard's key prefix (`shardPrefix`). */
  readonly prefix: string;
  readonly queue: Queue<AgentJobData, AgentTaskResult>;
  /** Fair share on this shard's queue (tenant settings and running slots are global). */
  readonly fair: FairShare;
  readonly sessionOrder: SessionOrder | undefined;
}

/** Task ids whose shard the client remembers (a task never changes shard). */
const SHARD_CACHE_SIZE = 10_000;

/** Entries read per round trip from a task's stream. */
const STREAM_BATCH = 1_000;
/** Without a wake-up, how often a follower re-reads the stream and the task. */
const FOLLOW_SWEEP_MS = 1_000;

/**
 * The producer side of Agentry: submit tasks, read their status, wait for results, cancel.
 * Connections fail fast when Redis is down: `submit` rejects with `REDIS_UNAVAILABLE`, never hangs.
 */
export class AgentryClient {
  /** Shard 0's queue: the only queue unless `shards` > 1 (see {@link shards}). */
  readonly queue: Queue<AgentJobData, AgentTaskResult>;
  /** The base prefix (`AGENTRY_PREFIX`): global keys, and shard 0's with one shard. */
  readonly prefix: string;
  readonly queueName: string;
  /** Every queue shard, shard 0 first. */
  readonly shards: readonly ClientShard[];
  /** The shard count check of {@link pinShards}, once it passed or while it runs. */
  private pinned: Promise<void> | undefined;
  /** The client's Redis connection (fail-fast): for reads beside BullMQ's, such as the queue's event stream. */
  readonly redis: Redis;
  private readonly ownsRedis: boolean;
  private readonly clock: Clock;
  /** Shard 0's fair share (tenant settings are global: any shard's instance reads them). */
  readonly fair: FairShare;
  private readonly fairOrder: boolean;
  private readonly waitReplicas: AgentryClientOptions["waitReplicas"];
  private readonly events = new Map<number, Promise<QueueEvents>>();
  private readonly eventsConnections: Redis[] = [];
  private readonly flows = new Map<number, FlowProducer>();
  private readonly shardOfTask = new Map<string, ClientShard>();
  /** Claims of idempotent submits on the global slot; only with more than one shard. */
  private readonly claims: SubmitClaims;
  private wakeups: TaskStreamWakeups | undefined;
  private readonly telemetry: AgentryClientOptions["telemetry"];

  constructor(options: AgentryClientOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
    this.ownsRedis = options.redis === undefined;
    this.redis =
      options.redis ?? createRedis({ url: options.url, role: "producer", connectionName: "agentry-client" });
    this.redis.on("error", () => undefined);
    this.clock = options._internal?.clock ?? systemClock;
    this.telemetry = options.telemetry;
    this.fairOrder = options.fairShare ?? true;
    this.waitReplicas =
      options.waitReplicas && options.waitReplicas.replicas > 0 ? options.waitReplicas : undefined;
    const count = options.shards ?? 1;
    const order = options.sessionOrder;
    if (count > 1 && order !== undefined && typeof order !== "function")
      throw new AgentryError(
        "INVALID_CONFIG",
        "with more than one queue shard, sessionOrder must be a function from a shard's prefix to its session order",
      );
    this.shards = shardPrefixes(this.prefix, count).map((prefix, index) => {
      const queue = new Queue<AgentJobData, AgentTaskResult>(this.queueName, {
        connection: this.redis,
        prefix,
        ...(this.telemetry ? { telemetry: this.telemetry } : {}),
      });
      queue.on("error", () => undefined);
      return {
        index,
        prefix,
        queue,
        fair: new FairShare({
          redis: this.redis,
          prefix,
          globalPrefix: this.prefix,
          queueName: this.queueName,
          _internal: { clock: this.clock },
        }),
        sessionOrder: typeof order === "function" ? order(prefix) : order,
      };
    });
    const first = this.shards[0] as ClientShard;
    this.claims = new SubmitClaims(this.redis, this.prefix);
    this.queue = first.queue;
    this.fair = first.fair;
  }

  /**
   * Validates and enqueues one agent task. Invalid input → `INVALID_INPUT` listing the fields;
   * an oversized prompt → `PAYLOAD_TOO_LARGE`; Redis down → `REDIS_UNAVAILABLE`.
   * With an idempotency key, a second submit returns the first task's id.
   */
  async submit(input: SubmitTaskInput, caller: Caller): Promise<SubmittedTask> {
    const payload = this.buildPayload(input, caller);
    const taskId = taskIdFor(payload.tenant, input.idempotencyKey);
    return this.guard(async () => {
      await this.pinShards();
      if (input.idempotencyKey) {
        // On any shard: a resubmit naming another session must still find the first task.
        const found = await this.locate(taskId);
        const existing = found ? await found.queue.getJob(taskId) : undefined;
        if (existing && found) {
          await this.awaitReplicas(found, taskId);
          return {
            taskId,
            sessionId: ownPayload(existing, payload.tenant, taskId).sessionId,
            deduplicated: true,
          };
        }
      }
      const shard = this.shardFor(payload.tenant, payload.sessionId);
      // Concurrent submits of one key meet at a claim on the global slot first, and only its
      // holder enqueues: with several shards they may route to different ones, and even on one
      // BullMQ's add of a job id already there does not say so (both callers would be told they
      // created the task).
      let claim: HeldClaim | undefined;
      if (input.idempotencyKey) {
        const outcome = await this.claims.take(taskId, payload.tenant, shard.index, async (index) =>
          this.shards[index]?.queue.getJob(taskId),
        );
        if (outcome.type === "found") {
          this.remember(taskId, this.shards[outcome.shard] as ClientShard);
          await this.awaitReplicas(this.shards[outcome.shard] as ClientShard, taskId);
          return {
            taskId,
            sessionId: ownPayload(outcome.job, payload.tenant, taskId).sessionId,
            deduplicated: true,
          };
        }
        claim = outcome.claim;
      }
      const session = tenantOwnedId(payload.tenant, "session", payload.sessionId);
      let stamped: { base: number; stamps: FairStamp[] } | undefined;
      let submitted: SubmittedTask;
      try {
        await shard.sessionOrder?.enqueue(session, taskId);
        stamped = await shard.fair.stamp(payload.tenant, [taskId], { fair: this.fairOrder });
        const priority = stamped.stamps[0]?.priority ?? 0;
        const job = await shard.queue.add(
          "agent.run",
          { payload, parkCount: 0 },
          { ...jobOptionsFor("agent.run"), jobId: taskId, ...(priority > 0 ? { priority } : {}) },
        );
        const deduplicated = job.data.payload.submittedAt !== payload.submittedAt;
        if (!deduplicated) await this.restampIfRebased(shard, [job], stamped);
        this.remember(taskId, shard);
        // The job is there: should marking the claim fail, it lapses (PENDING_MS) and later
        // submits find the job itself.
        await claim?.commit().catch(() => undefined);
        submitted = { taskId, sessionId: ownPayload(job, payload.tenant, taskId).sessionId, deduplicated };
      } catch (err) {
        await shard.sessionOrder?.remove(session, taskId).catch(() => undefined);
        if (stamped) await shard.fair.forget(payload.tenant, taskId).catch(() => undefined);
        await claim?.release().catch(() => undefined);
        throw err;
      }
      // The task is enqueued whatever this finds: a shortfall says so, and leaves it be.
      await this.awaitReplicas(shard, taskId);
      return submitted;
    });
  }

  /**
   * With `waitReplicas`: returns once that many replicas hold task `taskId` of `shard`, else
   * throws retryable `REDIS_UNAVAILABLE`. With a probe write on the task's slot first: a task
   * found by its idempotency key was written by another connection (see awaitReplicas).
   */
  private async awaitReplicas(shard: ClientShard, taskId: string): Promise<void> {
    const short = await this.replicationShortfall(
      `${shard.prefix}:${this.queueName}:${taskId}`,
      `${shard.prefix}:${this.queueName}:replication-probe`,
    );
    if (!short) return;
    throw new AgentryError(
      "REDIS_UNAVAILABLE",
      short.held
        ? `Task ${taskId} is enqueued, but ${short.why}: a failover now could lose it; submit it again with the same idempotency key (it stays one task)`
        : `Task ${taskId} is not on its Redis master (lost in a failover?): submit it again`,
      { retryable: true, details: { taskId, replicas: short.replicas } },
    );
  }

  /**
   * With `waitReplicas`: how far the replicas fall short of holding `key` (written on this
   * client's connection, or on another one when `probe` is given: see awaitReplicas), or
   * undefined when they hold it or no wait is set.
   */
  private async replicationShortfall(
    key: string,
    probe?: string,
  ): Promise<{ held: boolean; why: string; replicas: { wanted: number; acked: number } } | undefined> {
    const wait = this.waitReplicas;
    if (!wait) return undefined;
    const timeoutMs = wait.timeoutMs ?? 1_000;
    const { held, acked } = await awaitReplicas(this.redis, {
      key,
      ...(probe === undefined ? {} : { probe }),
      replicas: wait.replicas,
      timeoutMs,
    });
    if (held && acked >= wait.replicas) return undefined;
    return {
      held,
      why: held
        ? `${acked} of ${wait.replicas} Redis replica(s) acknowledged it within ${timeoutMs} ms`
        : "its Redis master no longer holds it (lost in a failover?)",
      replicas: { wanted: wait.replicas, acked },
    };
  }

  /**
   * Submits several tasks as one unit (a BullMQ flow). The group completes when every child has
   * finished; with `all-settled` (default) its result lists each child's result or error, with
   * `fail-fast` the group fails as soon as one child fails.
   */
  async submitGroup(
    inputs: SubmitTaskInput[],
    caller: Caller,
    options: { failurePolicy?: FanoutPayload["failurePolicy"] } = {},
  ): Promise<{ groupId: string; taskIds: string[] }> {
    if (inputs.length === 0) throw new AgentryError("INVALID_INPUT", "a group needs at least one task");
    const groupId = newId("group");
    const failurePolicy = options.failurePolicy ?? "all-settled";
    const payloads = inputs.map((input) => ({ ...this.buildPayload(input, caller), groupId }));
    const taskIds = payloads.map(() => newId("task"));
    // A flow's jobs share one queue: the group goes to the shard of its first task's session.
    const shard = this.shardFor(caller.tenant, (payloads[0] as AgentTaskPayload).sessionId);
    return this.guard(async () => {
      await this.pinShards();
      let flows = this.flows.get(shard.index);
      if (!flows) {
        flows = new FlowProducer({
          connection: this.redis,
          prefix: shard.prefix,
          ...(this.telemetry ? { telemetry: this.telemetry } : {}),
        });
        this.flows.set(shard.index, flows);
      }
      for (const [i, p] of payloads.entries())
        await shard.sessionOrder?.enqueue(
          tenantOwnedId(p.tenant, "session", p.sessionId),
          taskIds[i] as string,
        );
      const stamped = await shard.fair.stamp(caller.tenant, taskIds, { fair: this.fairOrder });
      const parent: FanoutPayload = {
        groupId,
        tenant: caller.tenant,
        submittedAt: this.clock.now(),
        failurePolicy,
        taskIds,
      };
      const tree = {
        name: "agent.fanout",
        queueName: this.queueName,
        data: parent,
        opts: { ...jobOptionsFor("agent.fanout"), jobId: groupId },
        children: payloads.map((payload, i) => ({
          name: "agent.run",
          queueName: this.queueName,
          data: { payload, parkCount: 0 },
          opts: {
            ...jobOptionsFor("agent.run"),
            jobId: taskIds[i] as string,
            ...((stamped.stamps[i]?.priority ?? 0) > 0 ? { priority: stamped.stamps[i]?.priority } : {}),
            ...(failurePolicy === "fail-fast"
              ? { failParentOnFailure: true }
              : { ignoreDependencyOnFailure: true }),
          },
        })),
      };
      const addFlow = (on: FlowProducer) => on.add(tree);
      let flow: Awaited<ReturnType<typeof addFlow>>;
      try {
        flow = await addFlow(flows);
      } catch (err) {
        // BullMQ adds a flow in one MULTI, where the client cannot resend a script the server
        // lost (a SCRIPT FLUSH, a restart behind a proxy): the scripts are loaded and, when the
        // group was not created, it is added again with the same ids.
        if (!isNoScriptError(err)) throw err;
        if ((await this.redis.exists(keySpace(shard.prefix).key(this.queueName, groupId))) === 1)
          throw AgentryError.from(err);
        await loadClientScripts(this.redis);
        flow = await addFlow(flows);
      }
      await this.restampIfRebased(
        shard,
        (flow.children ?? []).map((c) => c.job as Job<AgentJobData, AgentTaskResult>),
        stamped,
      );
      for (const id of [groupId, ...taskIds]) this.remember(id, shard);
      // BullMQ reads only the parent's reply of the flow's MULTI: a child whose add failed there
      // (the server lost its script cache under this connection) is missing without an error.
      const exists = this.redis.pipeline();
      for (const id of taskIds) exists.exists(keySpace(shard.prefix).key(this.queueName, id));
      const replies = (await exists.exec()) ?? [];
      const missing = taskIds.filter((_, i) => replies[i]?.[1] !== 1);
      if (missing.length > 0) {
        // The scripts the children's adds met NOSCRIPT on are loaded, so the group sent again
        // is added whole (the client still counts them as loaded on this connection).
        await loadClientScripts(this.redis).catch(() => undefined);
        throw new AgentryError(
          "REDIS_UNAVAILABLE",
          `group ${groupId}: ${missing.length} of its ${taskIds.length} tasks were not created; submit the group again`,
          { details: { groupId, missing } },
        );
      }
      return { groupId, taskIds };
    });
  }

  /** The status of a task. Unknown or malformed id (or another tenant's task) → `NOT_FOUND`. */
  async status(taskId: string, caller?: Caller): Promise<TaskStatus> {
    // A malformed id could name one of BullMQ's own keys; it is never looked up.
    if (!isTaskId(taskId)) throw new AgentryError("NOT_FOUND", `No task ${taskId}`);
    const shard = await this.guard(() => this.locate(taskId));
    if (!shard) throw new AgentryError("NOT_FOUND", `No task ${taskId}`);
    // State first, then the job: the worker writes a task's error, parked reason and result
    // before (or with) the state change, so data read after the state is never older than it.
    const state = await this.guard(() => shard.queue.getJobState(taskId));
    const job = await this.guard(() => shard.queue.getJob(taskId));
    if (!job || !job.data?.payload || (caller && job.data.payload.tenant !== caller.tenant)) {
      throw new AgentryError("NOT_FOUND", `No task ${taskId}`);
    }
    return statusOfJob(job, state);
  }

  /** A fan-out group's result once finished, else its state. Unknown or malformed id, not a group, or another tenant's group → `NOT_FOUND`. */
  async groupResult(
    groupId: string,
    caller?: Caller,
  ): Promise<{ state: string; result?: FanoutResult; failedReason?: string }> {
    if (!isGroupId(groupId)) throw new AgentryError("NOT_FOUND", `No group ${groupId}`);
    const shard = await this.guard(() => this.locate(groupId));
    const job = (shard ? await this.guard(() => shard.queue.getJob(groupId)) : undefined) as
      Job<FanoutPayload, FanoutResult> | undefined;
    if (!job || job.name !== "agent.fanout" || (caller && job.data?.tenant !== caller.tenant))
      throw new AgentryError("NOT_FOUND", `No group ${groupId}`);
    const state = await job.getState();
    return {
      state,
      ...(job.returnvalue ? { result: job.returnvalue } : {}),
      ...(job.failedReason ? { failedReason: job.failedReason } : {}),
    };
  }

  /**
   * Waits for a task to finish. Resolves with its result; rejects with the task's typed error
   * (`AgentryError` rebuilt from the job), or `TIMEOUT` after `timeoutMs`.
   */
  async wait(
    taskId: string,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<AgentTaskResult> {
    const timeoutMs = options.timeoutMs ?? 300_000;
    for await (const event of this.watch(taskId, { signal: options.signal, timeoutMs })) {
      if (event.type === "completed") return event.result;
      if (event.type === "failed") throw AgentryError.fromData(event.error);
    }
    throw new AgentryError("TIMEOUT", `Task ${taskId} did not finish within ${timeoutMs / 1000} s`);
  }

  /**
   * Streams a task's progress and its end. Uses BullMQ's queue events, and re-reads the job
   * periodically so an event missed during a reconnect cannot stall the stream. A re-read Redis
   * does not answer (a restart, a failover) is tried again on the next one, until `timeoutMs`.
   * With `caller`, another tenant's task ends the stream with `NOT_FOUND` before any event.
   */
  async *watch(
    taskId: string,
    options: { signal?: AbortSignal; timeoutMs?: number; caller?: Caller } = {},
  ): AsyncGenerator<TaskEvent> {
    const buffer: TaskEvent[] = [];
    let wake: (() => void) | undefined;
    const push = (e: TaskEvent) => {
      buffer.push(e);
      wake?.();
    };
    const onProgress = ({ jobId, data }: { jobId: string; data: unknown }) => {
      if (jobId === taskId && typeof data === "object" && data)
        push({ type: "progress", taskId, progress: data as TaskProgress });
    };
    const onEnd = ({ jobId }: { jobId: string }) => {
      if (jobId === taskId) wake?.();
    };
    // The queue's events make the stream prompt, the polls below make it right: they do not wait
    // for the events' reader to open (it waits for Redis, however long it is away), and a reader
    // that opens late or never only makes the stream slower.
    let events: QueueEvents | undefined;
    let finished = false;
    void this.queueEvents(taskId).then(
      (opened) => {
        if (finished) return;
        events = opened;
        opened.on("progress", onProgress);
        opened.on("completed", onEnd);
        opened.on("failed", onEnd);
        wake?.();
      },
      () => undefined,
    );
    const deadline = this.clock.now() + (options.timeoutMs ?? Number.MAX_SAFE_INTEGER);
    try {
      let lastProgress = "";
      while (true) {
        if (options.signal?.aborted) throw new AgentryError("CANCELLED", "watch aborted");
        while (buffer.length > 0) {
          const e = buffer.shift() as TaskEvent;
          const key = JSON.stringify(e);
          if (key !== lastProgress) {
            lastProgress = key;
            yield e;
          }
        }
        // Redis going away for a moment (a restart, a failover) does not end the watch: the
        // task goes on, so the next poll, until the deadline, asks again.
        const status = await this.status(taskId, options.caller).catch((err: unknown) => {
          if (isAgentryError(err, "REDIS_UNAVAILABLE") && this.clock.now() < deadline) return undefined;
          throw err;
        });
        if (status === undefined) {
          await sleep(Math.min(1_000, Math.max(0, deadline - this.clock.now())));
          continue;
        }
        if (status.state === "completed" && status.result) {
          yield { type: "completed", taskId, result: status.result };
          return;
        }
        if (status.state === "failed") {
          yield { type: "failed", taskId, error: status.error ?? errorFromFailedReason(undefined) };
          return;
        }
        if (this.clock.now() >= deadline) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(1_000, Math.max(0, deadline - this.clock.now())));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      finished = true;
      events?.off("progress", onProgress);
      events?.off("completed", onEnd);
      events?.off("failed", onEnd);
    }
  }

  /**
   * The key of a task's stream (progress and model text, written by its workers) on the task's
   * shard; also the channel its writes are announced on. `NOT_FOUND` for a task on no shard.
   */
  async taskStreamKey(taskId: string): Promise<string> {
    const shard = await this.guard(() => this.locate(taskId));
    if (!shard) throw new AgentryError("NOT_FOUND", `No task ${taskId}`);
    return taskStreamKey(shard.prefix, this.queueName, taskId);
  }

  /**
   * Entries of a task's stream after the stream id `after` (`"0-0"`: from the start), oldest
   * first, at most `count`. A missing stream (nothing written yet, or expired) reads as empty.
   * The id is not checked against the tenant: check the task with `status(taskId, caller)` first.
   */
  async readTaskStream(taskId: string, after = "0-0", count = STREAM_BATCH): Promise<TaskStreamRecord[]> {
    if (!isTaskId(taskId)) throw new AgentryError("NOT_FOUND", `No task ${taskId}`);
    const key = await this.taskStreamKey(taskId);
    const raw = (await this.guard(() => this.redis.xrange(key, `(${after}`, "+", "COUNT", count))) as [
      string,
      string[],
    ][];
    const records: TaskStreamRecord[] = [];
    for (const [id, fields] of raw) {
      const entry = parseTaskStreamEntry(fields);
      if (entry) records.push({ id, entry });
    }
    return records;
  }

  /**
   * Calls `onWrite` whenever a worker writes to the task's stream: a wake-up to read it, with the
   * write's notice (the id it follows and the entries it added; undefined if unreadable) so a
   * reader positioned at `notice.prev` can skip the read. Resolves, once subscribed, with the
   * function that stops it. One subscriber connection serves every listener of this client
   * (opened on first use, closed by `close`).
   */
  async onTaskStream(
    taskId: string,
    onWrite: (notice: TaskStreamNotice | undefined) => void,
  ): Promise<() => Promise<void>> {
    if (!this.wakeups) {
      const subscriber = duplicateRedis(this.redis, {
        maxRetriesPerRequest: null,
        enableOfflineQueue: true,
        commandTimeout: undefined,
      });
      subscriber.on("error", () => undefined);
      this.wakeups = new TaskStreamWakeups(subscriber);
    }
    const key = await this.taskStreamKey(taskId);
    return this.guard(() =>
      (this.wakeups as TaskStreamWakeups).listen(key, (message) => onWrite(parseTaskStreamNotice(message))),
    );
  }

  /**
   * Follows a task live: its stream from the start (or after the stream id `after`), each entry
   * as it is written (progress, and the model's text as `delta` pieces, see `StreamedText`), then
   * its `completed` or `failed` end. With `caller`, another tenant's task throws `NOT_FOUND`
   * before anything is yielded. Ends without an end event after `timeoutMs`.
   */
  async *follow(
    taskId: string,
    options: { signal?: AbortSignal; timeoutMs?: number; caller?: Caller; after?: string } = {},
  ): AsyncGenerator<TaskFollowEvent> {
    let wake: (() => void) | undefined;
    let pending: boolean | undefined;
    let checkStatus = true;
    const onWrite = () => {
      pending = true;
      wake?.();
    };
    const onEnd = ({ jobId }: { jobId: string }) => {
      if (jobId !== taskId) return;
      checkStatus = true;
      onWrite();
    };
    const stop = await this.onTaskStream(taskId, onWrite);
    const events = await this.queueEvents(taskId);
    events.on("completed", onEnd);
    events.on("failed", onEnd);
    const onAbort = () => wake?.();
    options.signal?.addEventListener("abort", onAbort);
    const deadline = this.clock.now() + (options.timeoutMs ?? Number.MAX_SAFE_INTEGER);
    try {
      // Refuses an unknown task or another tenant's before anything is read.
      let status: TaskStatus | undefined = await this.status(taskId, options.caller);
      let cursor = options.after ?? "0-0";
      while (true) {
        if (options.signal?.aborted) throw new AgentryError("CANCELLED", "follow aborted");
        pending = false;
        // The task first, then the stream: a finished task's entries are all in what is read.
        if (checkStatus) status ??= await this.status(taskId, options.caller);
        checkStatus = false;
        for (
          let batch = await this.readTaskStream(taskId, cursor);
          batch.length > 0;
          batch = batch.length < STREAM_BATCH ? [] : await this.readTaskStream(taskId, cursor)
        ) {
          for (const { id, entry } of batch) {
            cursor = id;
            if (entry.type === "progress") {
              if (entry.progress.phase === "done") checkStatus = true;
              yield { type: "progress", taskId, id, progress: entry.progress };
            } else
              yield { type: "delta", taskId, id, step: entry.step, offset: entry.offset, text: entry.text };
          }
        }
        if (status?.state === "completed" && status.result) {
          yield { type: "completed", taskId, result: status.result };
          return;
        }
        if (status?.state === "failed") {
          yield { type: "failed", taskId, error: status.error ?? errorFromFailedReason(undefined) };
          return;
        }
        status = undefined;
        if (this.clock.now() >= deadline) return;
        if (pending || checkStatus) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(
            () => {
              checkStatus = true;
              resolve();
            },
            Math.min(FOLLOW_SWEEP_MS, Math.max(0, deadline - this.clock.now())),
          );
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      events.off("completed", onEnd);
      events.off("failed", onEnd);
      await stop();
    }
  }

  /**
   * Cancels a task. A queued or parked task is removed at once: a session turn it held ends and
   * the session's next task is woken; workers are told, so an approval it waited for is
   * cancelled (and audited). A running one is aborted by its worker (it fails with `CANCELLED`).
   * Returns the state the task was in. With `waitReplicas`, returns only once replicas hold the
   * cancel, else throws retryable `REDIS_UNAVAILABLE` naming the task.
   */
  async cancel(taskId: string, caller?: Caller): Promise<{ cancelled: boolean; state: string }> {
    const status = await this.status(taskId, caller);
    if (status.state === "completed" || status.state === "failed")
      return { cancelled: false, state: status.state };
    const shard = (await this.guard(() => this.locate(taskId))) as ClientShard;
    const outcome = await this.cancelOn(shard, taskId, status);
    // With waitReplicas, a cancel returns only once replicas hold its marker (which a worker
    // running the task checks) and, after the probe on the task's slot, the job's removal.
    const short = await this.guard(() =>
      this.replicationShortfall(
        cancelKey(shard.prefix, taskId),
        `${shard.prefix}:${this.queueName}:replication-probe`,
      ),
    );
    if (short)
      throw new AgentryError(
        "REDIS_UNAVAILABLE",
        `The cancel of task ${taskId} is recorded, but ${short.why}: a failover now could lose it; if the task's status still shows it queued or running, cancel it again`,
        { retryable: true, details: { taskId, replicas: short.replicas } },
      );
    return outcome;
  }

  private cancelOn(
    shard: ClientShard,
    taskId: string,
    status: TaskStatus,
  ): Promise<{ cancelled: boolean; state: string }> {
    return this.guard(async () => {
      await this.redis.set(cancelKey(shard.prefix, taskId), "1", "EX", 24 * 3600);
      const job = await shard.queue.getJob(taskId);
      const state = job ? await job.getState() : "unknown";
      if (job && (state === "waiting" || state === "delayed" || state === "prioritized")) {
        try {
          await job.remove();
          const session = tenantOwnedId(status.tenant, "session", status.sessionId);
          await shard.sessionOrder?.remove(session, taskId, { endTurn: true });
          const next = await shard.sessionOrder?.head(session);
          if (next) await this.promoteOn(shard, next);
          // It waits no more; a slot reserved for it (it was capped and just handed one) goes on.
          for (const id of await shard.fair.forget(status.tenant, taskId)) await this.promoteOn(shard, id);
          await this.redis.publish(cancelChannel(shard.prefix), taskId);
          return { cancelled: true, state: status.state };
        } catch {
          // Became active meanwhile: fall through to the running path.
        }
      }
      await this.redis.publish(cancelChannel(shard.prefix), taskId);
      return { cancelled: true, state: status.state };
    });
  }

  /**
   * A clock rebase that ran between stamping and enqueueing left the jobs with priorities of the
   * old frame (too large by the rebase's amount): give them their priorities in the new one.
   */
  private async restampIfRebased(
    shard: ClientShard,
    jobs: Job<AgentJobData, AgentTaskResult>[],
    stamped: { base: number; stamps: FairStamp[] },
  ): Promise<void> {
    if (!this.fairOrder || jobs.length === 0) return;
    const base = await shard.fair.base();
    if (base === stamped.base) return;
    const tags = new Map(stamped.stamps.map((s) => [s.taskId, s.tag]));
    for (const job of jobs) {
      const tag = tags.get(job.id as string);
      if (tag !== undefined) await job.changePriority({ priority: FairShare.priorityOf(tag, base) });
    }
  }

  /**
   * Wakes a parked task now (benign when it is not parked, or on no shard); a task about to park
   * sees the wake flag set first. Used for a session's next task, and for tasks handed a tenant slot.
   */
  async promote(taskId: string): Promise<void> {
    const shard = await this.guard(() => this.locate(taskId));
    if (shard) await this.promoteOn(shard, taskId);
  }

  private async promoteOn(shard: ClientShard, taskId: string): Promise<void> {
    await this.guard(async () => {
      await this.redis.set(wakeKey(shard.prefix, taskId), "1", "EX", 300);
      await (await shard.queue.getJob(taskId))?.promote().catch(() => undefined);
    });
  }

  /**
   * Checks once, before the first submit, that this client splits the queue as the deployment
   * does (`pinShardCount`): a client on another count would send tasks where no worker looks.
   * A refusal is not kept, so the next submit checks again.
   */
  private pinShards(): Promise<void> {
    this.pinned ??= pinShardCount(this.redis, this.prefix, this.shards.length).catch((err: unknown) => {
      this.pinned = undefined;
      throw err;
    });
    return this.pinned;
  }

  /** The shard a session's tasks go to (`shardOfSession`). */
  shardFor(tenant: string, sessionId: string): ClientShard {
    return this.shards[shardOfSession(tenant, sessionId, this.shards.length)] as ClientShard;
  }

  /**
   * The shard holding a task's (or group's) job, or undefined when none does. One shard needs no
   * lookup; otherwise every shard is asked at once (one `EXISTS` each) and the answer is kept.
   */
  async locate(taskId: string): Promise<ClientShard | undefined> {
    if (this.shards.length === 1) return this.shards[0];
    const known = this.shardOfTask.get(taskId);
    if (known) return known;
    const found = await Promise.all(
      this.shards.map((s) => this.redis.exists(keySpace(s.prefix).key(this.queueName, taskId))),
    );
    const shard = this.shards[found.findIndex((n) => n === 1)];
    if (shard) this.remember(taskId, shard);
    return shard;
  }

  private remember(taskId: string, shard: ClientShard): void {
    if (this.shards.length === 1) return;
    if (this.shardOfTask.size >= SHARD_CACHE_SIZE) {
      const oldest = this.shardOfTask.keys().next().value;
      if (oldest !== undefined) this.shardOfTask.delete(oldest);
    }
    this.shardOfTask.set(taskId, shard);
  }

  /**
   * Changes a tenant's fair-share settings (see {@link FairShare.setSettings}). Tasks a raised or
   * removed cap lets run are woken by the workers' reconcile. Returns the tenant's settings and
   * load afterwards.
   */
  async setTenantSettings(tenant: string, patch: TenantSettingsPatch): Promise<TenantLoad> {
    return this.guard(async () => {
      await this.fair.setSettings(tenant, patch);
      const [load] = await this.tenantLoad([tenant]);
      return load as TenantLoad;
    });
  }

  /** Settings and load (running, and waiting on every shard) of the given tenants, or of every known tenant. */
  async tenantLoad(tenants?: readonly string[]): Promise<TenantLoad[]> {
    return this.guard(async () => {
      const names =
        tenants ?? [...new Set((await Promise.all(this.shards.map((s) => s.fair.tenants()))).flat())].sort();
      return mergeTenantLoads(await Promise.all(this.shards.map((s) => s.fair.load(names))));
    });
  }

  /** Closes the client's connections. */
  async close(): Promise<void> {
    await this.wakeups?.close();
    for (const events of this.events.values()) await (await events.catch(() => undefined))?.close();
    for (const connection of this.eventsConnections) connection.disconnect();
    for (const flows of this.flows.values()) await flows.close();
    for (const shard of this.shards) await shard.queue.close();
    if (this.ownsRedis) await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private buildPayload(input: SubmitTaskInput, caller: Caller): AgentTaskPayload {
    if (typeof input?.prompt === "string" && input.prompt.length > MAX_PROMPT_CHARS) {
      throw new AgentryError(
        "PAYLOAD_TOO_LARGE",
        `prompt is ${input.prompt.length} characters; the limit is ${MAX_PROMPT_CHARS}`,
      );
    }
    const parsed = submitTaskInputSchema.safeParse(input);
    if (!parsed.success) throw invalidInput(parsed.error);
    const data = parsed.data;
    const payload = agentTaskPayloadSchema.safeParse({
      ...data,
      tenant: caller.tenant,
      userId: data.userId ?? caller.userId ?? "anonymous",
      // A new session for an idempotent submit is named after its task, so concurrent resubmits
      // route to the same queue shard, where BullMQ's job id dedupes them.
      sessionId:
        data.sessionId ??
        (data.idempotencyKey
          ? `session_${taskIdFor(caller.tenant, data.idempotencyKey).slice("task_".length)}`
          : newId("session")),
      submittedAt: this.clock.now(),
    });
    if (!payload.success) throw invalidInput(payload.error);
    return payload.data;
  }

  /**
   * The client's one reader of a queue shard's event stream (opened on first use, closed by
   * `close`): the shard of `taskId` (NOT_FOUND when it is on none), else shard 0. Each listener
   * gets the event's stream entry id as its last argument: a position that is the same for every
   * reader, so a consumer can resume from it (the producer's SSE ids are these).
   */
  async queueEvents(taskId?: string): Promise<QueueEvents> {
    let shard = this.shards[0] as ClientShard;
    if (taskId !== undefined) {
      const found = await this.guard(() => this.locate(taskId));
      if (!found) throw new AgentryError("NOT_FOUND", `No task ${taskId}`);
      shard = found;
    }
    let events = this.events.get(shard.index);
    if (!events) {
      const connection = duplicateRedis(this.redis, {
        maxRetriesPerRequest: null,
        enableOfflineQueue: true,
        commandTimeout: undefined,
      });
      connection.on("error", () => undefined);
      this.eventsConnections.push(connection);
      const opened = new QueueEvents(this.queueName, { connection, prefix: shard.prefix });
      opened.on("error", () => undefined);
      opened.setMaxListeners(0);
      events = opened.waitUntilReady().then(() => opened);
      this.events.set(shard.index, events);
    }
    return events;
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      if (this.redis.status !== "ready") {
        await waitForReady(this.redis, 2_000).catch((err: unknown) => {
          throw new AgentryError("REDIS_UNAVAILABLE", `Redis is unavailable (${this.redis.status})`, {
            cause: err,
          });
        });
      }
      return await fn();
    } catch (err) {
      if (AgentryError.isInstance(err)) throw err;
      if (isConnectionError(err)) {
        throw new AgentryError("REDIS_UNAVAILABLE", `Redis is unavailable: ${(err as Error).message}`, {
          cause: err,
        });
      }
      // Refused for now (out of memory, a replica after a failover, loading): retryable.
      if (isTransientRedisError(err)) throw AgentryError.from(err);
      throw err;
    }
  }
}

/**
 * The payload of a job found under a task id derived from this tenant's idempotency key. Another
 * tenant's job there (a forged job, or a digest collision) is a conflict, never a leak of its data.
 */
function ownPayload(job: Job<AgentJobData>, tenant: string, taskId: string): AgentTaskPayload {
  const payload = job.data?.payload;
  if (!payload || payload.tenant !== tenant) {
    throw new AgentryError("CONFLICT", `Task id ${taskId} is taken; submit with another idempotency key`);
  }
  return payload;
}

function invalidInput(error: z.ZodError): AgentryError {
  const fields = error.issues.map((i) => ({ path: i.path.join(".") || "(root)", message: i.message }));
  return new AgentryError(
    "INVALID_INPUT",
    `Invalid task: ${fields.map((f) => `${f.path}: ${f.message}`).join("; ")}`,
    {
      details: { fields },
    },
  );
}

function isConnectionError(err: unknown): boolean {
  const message = err instanceof Error ? err.message : "";
  return /Stream isn't writeable|enableOfflineQueue|Connection is closed|ECONNREFUSED|max retries per request|ETIMEDOUT|Reached the max retries/i.test(
    message,
  );
}

/** Loads every script defined on a client (BullMQ's commands among them): see `loadScripts`. */
async function loadClientScripts(redis: Redis): Promise<void> {
  const scripts = (redis as unknown as { scriptsSet?: Record<string, { lua: string }> }).scriptsSet ?? {};
  await loadScripts(
    redis,
    Object.values(scripts).map((script) => script.lua),
  );
}
