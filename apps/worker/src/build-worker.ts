import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import type { Telemetry } from "bullmq";
import type { Redis } from "ioredis";
import { createRedis, type Logger } from "@agentry/core";
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
  BudgetLedger,
  budgetRemainingOf,
  createAgentTaskHandler,
  createBudgetHooks,
  createMetrics,
  createMetricsHooks,
  createTracingHooks,
  linkFrom,
  queueDepthOf,
  registerTenantLoadMetrics,
  serializeSpanContext,
  setAgentUsage,
  withAgentSpan,
  type AgentryMetrics,
  type TaskHandler,
} from "@agentry/runtime";
import {
  ApprovalStore,
  AuditLog,
  SafetyValidator,
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

/** The reference policy shipped with the worker (packages/governance/policies/default.yaml). */
export const DEFAULT_POLICY_PATH = fileURLToPath(
  new URL("../../../packages/governance/policies/default.yaml", import.meta.url),
);

/** A wired worker process: every part, so tests and the demo can reach in. */
export interface BuiltWorker {
  worker: AgentWorker;
  model: LanguageModel;
  ledger: BudgetLedger;
  approvals: ApprovalStore;
  audit: AuditLog;
  metrics: AgentryMetrics;
  redis: Redis;
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
  const sessions = new RedisSessionStore({ redis, prefix });
  const turns = new RedisSessionTurns({ redis, prefix });

  // Governance: policies from the file, approvers' public keys, approvals, audit.
  const policyPath = config.AGENTRY_POLICY_FILE ?? DEFAULT_POLICY_PATH;
  const approverKeys: ApproverKeys = config.AGENTRY_APPROVERS_FILE
    ? loadApproversFile(config.AGENTRY_APPROVERS_FILE)
    : new Map();
  const policies = loadPolicyFile(policyPath);
  const validator = new SafetyValidator({ policies, redis, prefix });
  const audit = new AuditLog({
    redis,
    prefix,
    key: config.AGENTRY_AUDIT_KEY,
    previousKeys: config.AGENTRY_AUDIT_PREVIOUS_KEYS,
  });
  if (!audit.authenticated) {
    logger.warn(
      { event: "audit-unauthenticated" },
      "AGENTRY_AUDIT_KEY is not set: audit entries are not authenticated (anyone with Redis write access can rewrite them)",
    );
  }
  const approvals = new ApprovalStore({ redis: publisher, prefix, approverKeys, audit });
  const notifier =
    options.notifier ??
    (config.AGENTRY_APPROVAL_WEBHOOK_URL
      ? new WebhookNotifier({ url: config.AGENTRY_APPROVAL_WEBHOOK_URL })
      : new LogNotifier(logger));
  const governance = createGovernanceHooks({ validator, approvals, audit, notifier, approverKeys, logger });

  // Budgets, tracing, metrics.
  const ledger = new BudgetLedger({
    redis,
    prefix,
    leaseMs: config.AGENTRY_BUDGET_LEASE_MS,
    onLeaseExpired: async (r) => {
      await audit.append({
        type: "budget",
        taskId: r.taskId,
        data: { event: "lease-expired", reservationId: r.id, amount: r.amount, scopes: r.scopes },
      });
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
  const budget = createBudgetHooks({
    ledger,
    pricing,
    defaultModel: model.defaultModel,
    audit,
    leaseMs: config.AGENTRY_BUDGET_LEASE_MS,
  });
  const hooks: AgentHooks[] = [
    budget,
    governance,
    createTracingHooks({ pricing: costMicroUsd, provider: model.provider, defaultModel: model.defaultModel }),
    createMetricsHooks(metrics, { pricing: costMicroUsd, defaultModel: model.defaultModel }),
  ];

  const inner = createAgentTaskHandler({
    model,
    tools,
    hooks,
    redis,
    prefix,
    sessions,
    turns,
    recall: { memory },
    audit,
    actor,
    toolClaimMs: config.AGENTRY_TOOL_TIMEOUT_MS + 2_000,
  });
  // Each attempt is an `invoke_agent` span; a resumed attempt links to the first one's trace. The
  // attempt that completes the task carries the task's usage totals.
  const handler: TaskHandler = (ex) =>
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

  const worker = new AgentWorker({
    url: config.REDIS_URL,
    prefix,
    concurrency: config.AGENTRY_CONCURRENCY,
    ...(config.AGENTRY_GLOBAL_CONCURRENCY > 0
      ? { globalConcurrency: config.AGENTRY_GLOBAL_CONCURRENCY }
      : {}),
    lockDurationMs: config.AGENTRY_LOCK_DURATION_MS,
    stalledIntervalMs: config.AGENTRY_STALLED_INTERVAL_MS,
    shutdownGraceMs: config.AGENTRY_SHUTDOWN_GRACE_MS,
    taskStream: {
      maxLen: config.AGENTRY_TASK_STREAM_MAX_LEN,
      ttlMs: config.AGENTRY_TASK_STREAM_TTL_MS,
      flushMs: config.AGENTRY_TEXT_FLUSH_MS,
    },
    handler,
    logger,
    // A task cancelled while it waited for an approval: the approval is cancelled (audited once).
    onCancelRequested: async (taskId) => void (await approvals.cancelForTask(taskId)),
    ...(options.telemetry ? { telemetry: options.telemetry } : {}),
    onFinished: (e) =>
      metrics.recordTask({ outcome: e.outcome, tenant: e.payload.tenant, durationMs: e.durationMs }),
    // Approval decisions wake their tasks; the reconcile catches what an event missed and reaps
    // expired budget leases. On the same beat the worker wakes tasks held back by their tenant's
    // cap once the tenant has a free slot again.
    wakeSources: [approvalDecisions(approvals)],
    reconcilers: [reconcileApprovals(approvals), async () => void (await ledger.reapExpired())],
    reconcileEveryMs: options.reconcileEveryMs ?? config.AGENTRY_RECONCILE_INTERVAL_MS,
  });
  registerTenantLoadMetrics(metrics.registry, { read: () => worker.fair.load() });
  metrics.setCollectors({
    queueDepth: queueDepthOf(worker.queue),
    approvalsPending: async () => (await approvals.list({ status: "pending", limit: 10_000 })).length,
    budgetRemaining: budgetRemainingOf(ledger),
  });

  return {
    worker,
    model,
    ledger,
    approvals,
    audit,
    metrics,
    redis,
    start: () => worker.start(),
    async close() {
      await worker.close();
      await publisher.quit().catch(() => publisher.disconnect());
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
