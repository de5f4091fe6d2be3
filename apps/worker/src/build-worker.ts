import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import type { Telemetry } from "bullmq";
import type { Redis } from "ioredis";
import {
  checkClusterConfig,
  createRedis,
  pinShardCount,
  shardPrefixes,
  splitConcurrency,
  tenantOwnedId,
  readReplicaCounts,
  waitReplicasOf,
  type Logger,
} from "@agentry/core";
import type { AgentHooks } from "@agentry/agent";
import {
  costMicroUsd,
  createLanguageModel,
  estimateInputTokens,
  maxCostMicroUsd,
  type LanguageModel,
} from "@agentry/llm";
import { HashingEmbedder, RedisSessionStore, RedisSessionTurns, RedisVectorMemory } from "@agentry/memory";
import {
  AgentWorker,
  AllowanceLedger,
  BudgetLedger,
  mergeAllowanceHoldings,
  ShardedBudget,
  SplitCallLedger,
  budgetRemainingOf,
  createAgentTaskHandler,
  createBudgetHooks,
  createMetrics,
  createMetricsHooks,
  createTracingHooks,
  linkFrom,
  mergeTenantLoads,
  queueDepthOfShards,
  registerClockMetrics,
  registerEvictionMetrics,
  registerTenantLoadMetrics,
  serializeSpanContext,
  setAgentUsage,
  taskAuditOnce,
  withAgentSpan,
  type AgentryMetrics,
  type CallLedger,
  type QueueFailure,
  type Reconciler,
  type TaskHandler,
} from "@agentry/runtime";
import {
  ApprovalStore,
  AuditLog,
  SafetyValidator,
  acquireAuditLane,
  createGovernanceHooks,
  loadApproversFile,
  loadPolicyFile,
  LogNotifier,
  WebhookNotifier,
  type ApproverKeys,
  type Notifier,
} from "@agentry/governance";
import type { WorkerConfig } from "./config.js";
import { approvalDecisions, reconcileApprovals } from "./approval-wake.js";
import { demoRules, referenceTools } from "@agentry/reference";

/**
 * How far back each reconcile pass looks for tasks BullMQ failed on its own that no worker
 * recorded (the one that failed it died first).
 */
const QUEUE_FAILURE_SWEEP_MS = 10 * 60_000;

/** The reference policy shipped with the worker (packages/governance/policies/default.yaml). */
export const DEFAULT_POLICY_PATH = fileURLToPath(
  new URL("../../../packages/governance/policies/default.yaml", import.meta.url),
);

/** One queue shard a worker process consumes: its BullMQ worker host and its slot's stores. */
export interface BuiltShard {
  /** The shard's number, 0 .. AGENTRY_SHARDS - 1. */
  index: number;
  /** The shard's key prefix (`shardPrefix`). */
  prefix: string;
  worker: AgentWorker;
  /** Approvals of this shard's tasks. */
  approvals: ApprovalStore;
  /** This shard's audit chain. */
  audit: AuditLog;
}

/** A wired worker process: every part, so tests and the demo can reach in. */
export interface BuiltWorker {
  /** The shards this process consumes (`AGENTRY_WORKER_SHARDS`, else all), lowest first. */
  shards: BuiltShard[];
  /** The first consumed shard's worker (the only one with one shard). */
  worker: AgentWorker;
  model: LanguageModel;
  /** The budget ledger, on the global prefix: one for every shard. */
  ledger: BudgetLedger;
  /** The first consumed shard's approvals (see {@link BuiltShard}). */
  approvals: ApprovalStore;
  /** The first consumed shard's audit chain (see {@link BuiltShard}). */
  audit: AuditLog;
  metrics: AgentryMetrics;
  redis: Redis;
  /** Health of the process: every shard's worker must be healthy. */
  health(): ReturnType<AgentWorker["health"]>;
  /** Starts taking jobs, the approval listener and the periodic reconcile. */
  start(): Promise<void>;
  /** Graceful stop (see AgentWorker.close). */
  close(): Promise<void>;
}

/** Options beyond the environment, for tests and the demo. */
export interface BuildWorkerOptions {
  logger: Logger;
  /** Replaces the model chosen from the environment. */
  model?: LanguageModel;
  /** How often to reconcile approvals and reap expired budget leases. @defaultValue `AGENTRY_RECONCILE_INTERVAL_MS` (5_000) */
  reconcileEveryMs?: number;
  notifier?: Notifier;
  /** bullmq-otel instance, so task traces continue from the producer. */
  telemetry?: Telemetry;
}

/**
 * Wires the reference worker from small parts: model, tools, memory, budget, governance,
 * tracing, metrics and the BullMQ worker host. No part knows about the others.
 */
export async function buildWorker(config: WorkerConfig, options: BuildWorkerOptions): Promise<BuiltWorker> {
  const { logger } = options;
  /** Who this worker is in audit entries. */
  const actor = config.AGENTRY_WORKER_NAME ?? `worker-${hostname()}-${process.pid}`;
  const prefix = config.AGENTRY_PREFIX;
  const redis = createRedis({ url: config.REDIS_URL, role: "worker", connectionName: "agentry-worker-cmd" });
  redis.on("error", () => undefined);
  const publisher = createRedis({
    url: config.REDIS_URL,
    role: "command",
    connectionName: "agentry-worker-pub",
  });
  publisher.on("error", () => undefined);
  // Tool claims that wait for replicas go on a connection of their own: a WAIT holds its
  // connection until the replicas answer.
  const waitReplicas = waitReplicasOf(config);
  const claimRedis = waitReplicas
    ? createRedis({ url: config.REDIS_URL, role: "worker", connectionName: "agentry-worker-claims" })
    : undefined;
  claimRedis?.on("error", () => undefined);

  const model =
    options.model ??
    createLanguageModel({
      llm: config.AGENTRY_LLM,
      apiKey: config.ANTHROPIC_API_KEY,
      baseURL: config.ANTHROPIC_BASE_URL,
      model: config.AGENTRY_MODEL,
      idleTimeoutMs: config.AGENTRY_MODEL_IDLE_TIMEOUT_MS,
      scripted: { rules: demoRules, deltaDelayMs: config.AGENTRY_SCRIPTED_DELTA_MS },
    });
  const memory = new RedisVectorMemory({ redis, prefix, embedder: new HashingEmbedder() });
  const tools = referenceTools({
    redis,
    prefix,
    memory,
    timeoutMs: config.AGENTRY_TOOL_TIMEOUT_MS,
    deleteDelayMs: config.AGENTRY_TOOL_DELAY_MS,
  });
  // Governance: policies from the file, approvers' public keys, approvals, audit.
  const policyPath = config.AGENTRY_POLICY_FILE ?? DEFAULT_POLICY_PATH;
  const approverKeys: ApproverKeys = config.AGENTRY_APPROVERS_FILE
    ? loadApproversFile(config.AGENTRY_APPROVERS_FILE)
    : new Map();
  const policies = loadPolicyFile(policyPath);
  const validator = new SafetyValidator({ policies, redis, prefix });
  // One audit lane per process (AGENTRY_AUDIT_LANES > 1): its writes never race another
  // process's for a chain head.
  const auditLane = await acquireAuditLane({
    redis,
    prefix,
    lanes: config.AGENTRY_AUDIT_LANES,
    owner: actor,
    logger,
  });
  if (config.AGENTRY_AUDIT_LANES > 1)
    logger.info({ event: "audit-lane", lane: auditLane.lane }, `writing audit lane ${auditLane.lane}`);
  const auditOn = (on: string) =>
    new AuditLog({
      redis,
      prefix: on,
      lane: auditLane.lane,
      key: config.AGENTRY_AUDIT_KEY,
      previousKeys: config.AGENTRY_AUDIT_PREVIOUS_KEYS,
      onRewound: ({ stream, seen, found }) =>
        logger.error(
          { event: "audit-chain-rewound", stream, seenSeq: seen.seq, foundSeq: found.seq },
          `audit chain ${stream} went back from seq ${seen.seq} to seq ${found.seq}: entries after it are gone from Redis (lost writes in a crash or restart, or tampering); appends go on from seq ${found.seq + 1}; run agentry audit verify --anchors`,
        ),
    });
  const allShards = shardPrefixes(prefix, config.AGENTRY_SHARDS);
  // With several shards, the global slot has a chain of its own, for what happens there (budget
  // leases reaped); with one it is shard 0's.
  const globalAudit = auditOn(prefix);
  if (!globalAudit.authenticated) {
    logger.warn(
      { event: "audit-unauthenticated" },
      "AGENTRY_AUDIT_KEY is not set: audit entries are not authenticated (anyone with Redis write access can rewrite them)",
    );
  }
  const notifier =
    options.notifier ??
    (config.AGENTRY_APPROVAL_WEBHOOK_URL
      ? new WebhookNotifier({ url: config.AGENTRY_APPROVAL_WEBHOOK_URL })
      : new LogNotifier(logger));

  // Each shard's audit chain (the global one when there is one shard), one object per chain.
  const shardAudits = allShards.map((p) => (p === prefix ? globalAudit : auditOn(p)));
  // Budgets, tracing, metrics: global, shared by every shard; a session's budget is on its
  // session's shard (where its tasks run, a group's aside), so the per-task session draw does not
  // cross to the global slot.
  const ledgerOn = (on: string, audit: AuditLog) =>
    new BudgetLedger({
      redis,
      prefix: on,
      leaseMs: config.AGENTRY_BUDGET_LEASE_MS,
      onLeaseExpired: async (r) => {
        await audit.append({
          type: "budget",
          taskId: r.taskId,
          data: { event: "lease-expired", reservationId: r.id, amount: r.amount, scopes: r.scopes },
        });
      },
    });
  const ledger = ledgerOn(prefix, globalAudit);
  // With allowances, calls draw from this process's share instead of the ledger each time.
  const allowancesOn = (on: BudgetLedger): AllowanceLedger | undefined =>
    config.AGENTRY_BUDGET_ALLOWANCE_CALLS > 0
      ? new AllowanceLedger({
          ledger: on,
          callsPerDraw: config.AGENTRY_BUDGET_ALLOWANCE_CALLS,
          // Returned well within its reservation's lease, so only a dead process's is reaped.
          maxAgeMs: Math.max(2, Math.min(5_000, Math.floor(config.AGENTRY_BUDGET_LEASE_MS / 2))),
          idleMs: Math.max(1, Math.min(1_000, Math.floor(config.AGENTRY_BUDGET_LEASE_MS / 4))),
          holder: actor,
          logger,
        })
      : undefined;
  const budgets = new ShardedBudget(
    ledger,
    allShards.map((p, i) => (p === prefix ? ledger : ledgerOn(p, shardAudits[i] as AuditLog))),
  );
  const globalAllowances = allowancesOn(ledger);
  const allowanceLedgers: AllowanceLedger[] = globalAllowances ? [globalAllowances] : [];
  const mainCalls: CallLedger = globalAllowances ?? ledger;
  // A shard's call ledger, made when a call first reserves there (a group's task can run on
  // another shard than its session's, whose ledger holds the session's budget).
  const shardCalls = new Map<number, CallLedger>();
  const shardCallsOf = (index: number): CallLedger => {
    let calls = shardCalls.get(index);
    if (!calls) {
      const allowances = allowancesOn(budgets.shard(index));
      if (allowances) allowanceLedgers.push(allowances);
      calls = allowances ?? budgets.shard(index);
      shardCalls.set(index, calls);
    }
    return calls;
  };
  const callLedger: CallLedger =
    allShards.length === 1
      ? mainCalls
      : new SplitCallLedger({
          main: mainCalls,
          localFor: (scope) => {
            const shard = budgets.shardOf(scope);
            return shard === undefined ? undefined : shardCallsOf(shard);
          },
        });
  // The model's own prompt count (when it has one) lets budgets reserve a true bound near a limit.
  const countInputTokens = model.countInputTokens?.bind(model);
  const pricing = {
    estimateInputTokens,
    maxCostMicroUsd,
    costMicroUsd,
    ...(countInputTokens ? { countInputTokens } : {}),
  };
  const metrics = createMetrics({ defaultLabels: { service: "agentry-worker" } });
  const tracingHooks = createTracingHooks({
    pricing: costMicroUsd,
    provider: model.provider,
    defaultModel: model.defaultModel,
  });
  const metricsHooks = createMetricsHooks(metrics, {
    pricing: costMicroUsd,
    defaultModel: model.defaultModel,
  });
  const concurrency = splitConcurrency(config.AGENTRY_CONCURRENCY, config.AGENTRY_WORKER_SHARDS.length);
  const globalConcurrency =
    config.AGENTRY_GLOBAL_CONCURRENCY > 0
      ? splitConcurrency(config.AGENTRY_GLOBAL_CONCURRENCY, allShards.length)
      : undefined;

  // Each attempt is an `invoke_agent` span; a resumed attempt links to the first one's trace. The
  // attempt that completes the task carries the task's usage totals.
  const traced =
    (inner: TaskHandler): TaskHandler =>
    (ex) =>
      withAgentSpan(
        {
          taskId: ex.taskId,
          tenant: ex.payload.tenant,
          userId: ex.payload.userId,
          sessionId: ex.payload.sessionId,
          providerName: model.provider,
          requestModel: ex.payload.model ?? model.defaultModel,
        },
        async (span) => {
          if (!ex.firstTrace) {
            const serialised = serializeSpanContext(span);
            if (serialised) await ex.setFirstTrace(serialised);
          }
          const started = Date.now();
          const outcome = await inner(ex);
          if (outcome.type === "completed")
            setAgentUsage(span, outcome.result.usage, outcome.result.costMicroUsd);
          if (outcome.type === "park" && outcome.parked.reason === "approval") {
            // No hook sees a suspended tool call; count it and the paused attempt here.
            for (const tool of outcome.parked.tools ?? []) metrics.recordToolCall(tool, "suspend");
            metrics.recordTask({
              outcome: "awaiting_approval",
              tenant: ex.payload.tenant,
              durationMs: Date.now() - started,
            });
          }
          return outcome;
        },
        { links: [ex.firstTrace ? linkFrom(ex.firstTrace) : undefined] },
      );

  // A shard this process does not consume still gets reservations from it: a group's task
  // reserves its session's part on the session's shard, wherever the group runs. Its leases are
  // reaped here too, with the global ledger's, so a reservation whose process died is given back
  // even when no worker of the deployment consumes that shard.
  const consumed = new Set(config.AGENTRY_WORKER_SHARDS);
  const othersReaped = allShards.flatMap((p, i) =>
    p === prefix || consumed.has(i) ? [] : [budgets.shard(i)],
  );

  /** One consumed shard: its session, turn, audit and approval stores, handler and worker host. */
  const buildShard = (index: number, position: number): BuiltShard => {
    const shardPrefix = allShards[index] as string;
    const sessions = new RedisSessionStore({ redis, prefix: shardPrefix });
    const turns = new RedisSessionTurns({ redis, prefix: shardPrefix });
    const audit = shardAudits[index] as AuditLog;
    // Several shards: this shard's ledger holds its sessions' budgets; its workers reap it.
    const shardLedger = shardPrefix === prefix ? undefined : budgets.shard(index);
    const approvals = new ApprovalStore({ redis: publisher, prefix: shardPrefix, approverKeys, audit });
    const governance = createGovernanceHooks({ validator, approvals, audit, notifier, approverKeys, logger });
    const budget = createBudgetHooks({
      ledger: callLedger,
      pricing,
      defaultModel: model.defaultModel,
      audit,
      leaseMs: config.AGENTRY_BUDGET_LEASE_MS,
    });
    const hooks: AgentHooks[] = [budget, governance, tracingHooks, metricsHooks];
    const inner = createAgentTaskHandler({
      model,
      tools,
      hooks,
      redis,
      prefix: shardPrefix,
      sessions,
      turns,
      recall: { memory },
      audit,
      actor,
      toolClaimMs: config.AGENTRY_TOOL_TIMEOUT_MS + 2_000,
      ...(waitReplicas && claimRedis ? { toolClaimReplicas: { ...waitReplicas, redis: claimRedis } } : {}),
    });
    const failureOnce = (f: QueueFailure) => taskAuditOnce("failure", f.payload.tenant, f.taskId);
    const recordQueueFailure = async (f: QueueFailure): Promise<void> => {
      const p = f.payload;
      await audit.append(
        {
          type: "failure",
          taskId: f.taskId,
          tenant: p.tenant,
          userId: p.userId,
          sessionId: p.sessionId,
          actor,
          data: { code: "INTERNAL", message: `BullMQ failed the task: ${f.reason}`, retryable: false },
        },
        { once: failureOnce(f) },
      );
      const session = tenantOwnedId(p.tenant, "session", p.sessionId);
      await turns.remove(session, f.taskId, { endTurn: true });
      const next = await turns.head(session);
      if (next) await worker.promote(next);
    };
    // Should the worker that failed one die before recording it, the next reconcile pass of any
    // worker of the shard records it (what the failed set shows for the last QUEUE_FAILURE_SWEEP_MS).
    const sweepQueueFailures: Reconciler = async (control) => {
      const failures = await control.recentQueueFailures(QUEUE_FAILURE_SWEEP_MS);
      if (failures.length === 0) return;
      const recorded = redis.pipeline();
      for (const f of failures) recorded.exists(audit.onceKey(failureOnce(f)));
      const replies = (await recorded.exec()) ?? [];
      for (const [i, f] of failures.entries()) if (replies[i]?.[1] === 0) await recordQueueFailure(f);
    };
    const worker = new AgentWorker({
      url: config.REDIS_URL,
      prefix: shardPrefix,
      globalPrefix: prefix,
      concurrency: concurrency[position] as number,
      ...(globalConcurrency ? { globalConcurrency: globalConcurrency[index] as number } : {}),
      lockDurationMs: config.AGENTRY_LOCK_DURATION_MS,
      stalledIntervalMs: config.AGENTRY_STALLED_INTERVAL_MS,
      redisRetryMaxMs: config.AGENTRY_REDIS_RETRY_MAX_MS,
      shutdownGraceMs: config.AGENTRY_SHUTDOWN_GRACE_MS,
      taskStream: {
        maxLen: config.AGENTRY_TASK_STREAM_MAX_LEN,
        ttlMs: config.AGENTRY_TASK_STREAM_TTL_MS,
        finishedTtlMs: config.AGENTRY_TASK_STREAM_FINISHED_TTL_MS,
        flushMs: config.AGENTRY_TEXT_FLUSH_MS,
      },
      handler: traced(inner),
      logger: allShards.length === 1 ? logger : logger.child({ shard: index }),
      // A task cancelled while it waited for an approval: the approval is cancelled (audited once).
      onCancelRequested: async (taskId) => void (await approvals.cancelForTask(taskId)),
      ...(options.telemetry ? { telemetry: options.telemetry } : {}),
      onFinished: (e) =>
        metrics.recordTask({ outcome: e.outcome, tenant: e.payload.tenant, durationMs: e.durationMs }),
      // A task BullMQ failed before its handler ran (its attempts kept dying): its failure is
      // audited once, as the handler would have, and its session's next task gets the turn now,
      // not after the dead attempt's lease runs out.
      onQueueFailure: (f) => recordQueueFailure(f),
      // Approval decisions wake their tasks; the reconcile catches what an event missed and reaps
      // expired budget leases. On the same beat the worker wakes tasks held back by their tenant's
      // cap once the tenant has a free slot again.
      wakeSources: [approvalDecisions(approvals)],
      reconcilers: [
        reconcileApprovals(approvals),
        sweepQueueFailures,
        ...(position === 0
          ? [ledger, ...othersReaped].map((reaped) => async () => void (await reaped.reapExpired()))
          : []),
        ...(shardLedger ? [async () => void (await shardLedger.reapExpired())] : []),
      ],
      reconcileEveryMs: options.reconcileEveryMs ?? config.AGENTRY_RECONCILE_INTERVAL_MS,
      maxClockSkewMs: config.AGENTRY_MAX_CLOCK_SKEW_MS,
      clockSyncEveryMs: config.AGENTRY_CLOCK_SYNC_MS,
      evictionCheckEveryMs: config.AGENTRY_EVICTION_CHECK_MS,
    });
    return { index, prefix: shardPrefix, worker, approvals, audit };
  };

  const shards = config.AGENTRY_WORKER_SHARDS.map((index, position) => buildShard(index, position));
  const first = shards[0] as BuiltShard;
  // Every shard's worker reads the same two clocks; paused when any of them is.
  registerClockMetrics(metrics.registry, {
    get clockOffsetMs() {
      return first.worker.clockOffsetMs;
    },
    get clockSkewPaused() {
      return shards.some((s) => s.worker.clockSkewPaused);
    },
  });
  registerEvictionMetrics(metrics.registry, {
    get evictionPaused() {
      return shards.some((s) => s.worker.evictionPaused);
    },
  });
  registerTenantLoadMetrics(metrics.registry, {
    read: async () => mergeTenantLoads(await Promise.all(shards.map((s) => s.worker.fair.load()))),
  });
  metrics.setCollectors({
    queueDepth: queueDepthOfShards(shards.map((s) => ({ shard: s.index, queue: s.worker.queue }))),
    approvalsPending: async () => {
      const counts = await Promise.all(
        shards.map(async (s) => (await s.approvals.list({ status: "pending", limit: 10_000 })).length),
      );
      return counts.reduce((a, b) => a + b, 0);
    },
    budgetRemaining: budgetRemainingOf(budgets),
    ...(allowanceLedgers.length > 0
      ? { budgetAllowances: async () => mergeAllowanceHoldings(allowanceLedgers.map((a) => a.holdings())) }
      : {}),
  });

  return {
    shards,
    worker: first.worker,
    model,
    ledger,
    approvals: first.approvals,
    audit: first.audit,
    metrics,
    redis,
    async health() {
      const all = await Promise.all(shards.map((s) => s.worker.health()));
      return {
        ok: all.every((h) => h.ok),
        redis: all.every((h) => h.redis),
        running: all.every((h) => h.running),
        activeJobs: all.reduce((n, h) => n + h.activeJobs, 0),
        lastProgressAgoMs: all.reduce<number | null>(
          (max, h) => (h.lastProgressAgoMs === null ? max : Math.max(max ?? 0, h.lastProgressAgoMs)),
          null,
        ),
        reasons: all.flatMap((h, i) =>
          shards.length === 1 ? h.reasons : h.reasons.map((r) => `shard ${shards[i]?.index}: ${r}`),
        ),
      };
    },
    async start() {
      // A prefix that does not fit the Redis topology stops the process here, with one line,
      // instead of failing every poll with CROSSSLOT.
      await checkClusterConfig(redis as unknown as Parameters<typeof checkClusterConfig>[0], prefix);
      // So does a shard count other than the deployment's (tasks on a shard nobody consumes).
      await pinShardCount(redis, prefix, config.AGENTRY_SHARDS);
      if (waitReplicas) await warnReplicasShort(redis, waitReplicas.replicas, logger);
      for (const shard of shards) await shard.worker.start();
    },
    async close() {
      for (const shard of shards) await shard.worker.close();
      // Every call has finished: what the allowances served goes back to the ledger.
      await Promise.all(allowanceLedgers.map((a) => a.close()));
      await auditLane.release();
      await publisher.quit().catch(() => publisher.disconnect());
      await claimRedis?.quit().catch(() => claimRedis.disconnect());
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/**
 * Logs each master with fewer connected replicas than AGENTRY_REDIS_WAIT_REPLICAS asks for: its
 * tool calls wait for replicas that are not there, and their attempts are retried until they are.
 * Not a refusal: a replica that is restarting comes back.
 */
async function warnReplicasShort(redis: Redis, wanted: number, logger: Logger): Promise<void> {
  // A master that cannot be read now is the eviction check's to report.
  for (const { node, replicas } of await readReplicaCounts(redis)) {
    if (replicas === undefined || replicas >= wanted) continue;
    logger.warn(
      { event: "redis-replicas-short", node, replicas, wanted },
      `Redis master ${node} has ${replicas} connected replica(s) and AGENTRY_REDIS_WAIT_REPLICAS is ${wanted}: its tool calls do not run (their attempts are retried) until ${wanted} replica(s) acknowledge them`,
    );
  }
}
