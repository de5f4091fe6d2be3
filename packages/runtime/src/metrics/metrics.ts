import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AllowanceHolding } from "../budget/allowance.js";
import type { BudgetLedger } from "../budget/ledger.js";
import { BUDGET_SCOPE_KINDS } from "../budget/scope.js";
import { COLLECT_ERRORS_METRIC, scrapeTimeRefresh } from "./scrape-refresh.js";

/** How a task execution ended, as counted by `agentry_tasks_total`. Other strings are allowed. */
export type TaskMetricOutcome =
  | "completed"
  | "failed"
  /** Suspended until an approval is decided (job moved to delayed). */
  | "awaiting_approval"
  /** Failed with a retryable error; BullMQ will run it again. */
  | "retrying"
  /** Handed back to the queue because of a provider rate limit. */
  | "rate_limited"
  | "cancelled"
  | (string & {});

/** Token kinds of `agentry_tokens_total`. `input` excludes cache reads and writes (Anthropic's split). */
export type TokenKind = "input" | "output" | "cache_creation" | "cache_read";

/**
 * What is left of one budget scope, as the ledger reports it (`BudgetLedger.getStats(scope).remaining`).
 * Feeds `agentry_budget_remaining_tokens` and `agentry_budget_remaining_usd`; a dimension without a
 * limit (`null`) has no sample.
 */
export interface BudgetRemainingSample {
  /** `global`, `tenant:<t>`, `tenant:<t>:user:<u>` or `tenant:<t>:session:<s>`. */
  scope: string;
  tokens: number | null;
  /** Integer micro-USD, the ledger's unit; exported in USD. */
  costMicroUsd: number | null;
}

/** Budget allowances one worker process holds on one kind of scope (`AllowanceLedger.holdings`). */
export type BudgetAllowanceSample = Pick<AllowanceHolding, "kind" | "open" | "granted">;

/** The BullMQ states that make up the queue depth: jobs still to finish, never the retained finished ones. */
export const QUEUE_DEPTH_STATES = ["waiting", "active", "delayed", "prioritized"] as const;

/** A BullMQ state counted by `agentry_queue_depth`. */
export type QueueDepthState = (typeof QUEUE_DEPTH_STATES)[number];

/** Jobs per queue-depth state, e.g. `queue.getJobCounts(...QUEUE_DEPTH_STATES)`. */
export type QueueDepth = Record<QueueDepthState, number>;

/** The depth of one queue shard (`AGENTRY_SHARDS`), exported with its `shard` label. */
export interface ShardQueueDepth {
  shard: number;
  depth: QueueDepth;
}

/**
 * Callbacks that read current values when `/metrics` is scraped. Each runs at most
 * `collectTimeoutMs`; a failure or timeout keeps the previous values and counts in
 * `agentry_metrics_collect_errors_total{collector}` (a scrape never fails because Redis is slow).
 */
export interface MetricsCollectors {
  /** Remaining budget per scope (the ledger's `getStats`). Scopes not returned disappear. */
  budgetRemaining?: () => Promise<readonly BudgetRemainingSample[]>;
  /**
   * Jobs waiting, running, delayed (parked) and prioritized, e.g. `queueDepthOf(queue)`, or per
   * queue shard (`queueDepthOfShards`); one queue is shard 0. Completed and failed jobs that
   * BullMQ retains are not queue depth and are never exported as such.
   */
  queueDepth?: () => Promise<QueueDepth | readonly ShardQueueDepth[]>;
  /** Number of approvals awaiting a decision. */
  approvalsPending?: () => Promise<number>;
  /** This process's budget allowances (`AGENTRY_BUDGET_ALLOWANCE_CALLS`), by scope kind. */
  budgetAllowances?: () => Promise<readonly BudgetAllowanceSample[]>;
}

/** Options for {@link createMetrics}. */
export interface CreateMetricsOptions {
  /** @defaultValue a new registry (never prom-client's global one, so tests and apps do not collide) */
  registry?: Registry;
  collectors?: MetricsCollectors;
  /** Add prom-client's default process metrics (CPU, memory, event loop lag, GC). @defaultValue true */
  defaultMetrics?: boolean;
  /** Labels added to every metric, e.g. `{ service: "agentry-worker" }`. */
  defaultLabels?: Record<string, string>;
  /** @defaultValue 2000 */
  collectTimeoutMs?: number;
  /** Buckets of `agentry_task_duration_seconds`. @defaultValue 0.1 s … 30 min */
  taskDurationBuckets?: number[];
  /** Buckets of `agentry_model_call_duration_seconds`. @defaultValue 0.1 s … 2 min */
  modelCallDurationBuckets?: number[];
}

/** Agentry's Prometheus metrics. Names and labels: packages/runtime/src/metrics/README.md. */
export interface AgentryMetrics {
  readonly registry: Registry;
  readonly tasks: Counter<"outcome" | "tenant">;
  readonly taskDuration: Histogram<"outcome">;
  readonly modelCalls: Counter<"model" | "outcome">;
  readonly modelCallDuration: Histogram<"model">;
  readonly tokens: Counter<"tenant" | "kind">;
  readonly costUsd: Counter<"tenant">;
  readonly toolCalls: Counter<"tool" | "decision">;
  readonly budgetRemainingTokens: Gauge<"scope">;
  readonly budgetRemainingUsd: Gauge<"scope">;
  readonly queueDepth: Gauge<"state" | "shard">;
  readonly approvalsPending: Gauge;
  /** Counts one finished task execution and observes its duration. */
  recordTask(task: { outcome: TaskMetricOutcome; tenant: string; durationMs: number }): void;
  /** Adds one model call's cost, given in the ledger's integer micro-USD, to `agentry_cost_usd_total` (in USD). */
  recordCost(tenant: string, costMicroUsd: number): void;
  /** Counts one tool call (hooks see allow and deny; the worker reports `suspend` itself). */
  recordToolCall(tool: string, decision: "allow" | "deny" | "suspend"): void;
  /** Installs or replaces collectors (merged with the ones given so far). */
  setCollectors(collectors: MetricsCollectors): void;
  /** The exposition text for `GET /metrics`. */
  metricsText(): Promise<string>;
  /** The `Content-Type` of {@link metricsText}. */
  readonly contentType: string;
}

const MICRO_USD_PER_USD = 1_000_000;
const TASK_BUCKETS = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800];
const MODEL_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120];

/**
 * Creates Agentry's metrics on a Prometheus registry. Gauges that describe shared state (budget,
 * queue depth, pending approvals) are read through {@link MetricsCollectors} at scrape time.
 * Throws if the registry already holds metrics of the same names.
 */
export function createMetrics(options: CreateMetricsOptions = {}): AgentryMetrics {
  const registry = options.registry ?? new Registry();
  if (options.defaultLabels) registry.setDefaultLabels(options.defaultLabels);
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    // prom-client's gauges named `_total` break the counter-only `_total` rule; each is the sum of
    // the same gauge without the suffix (`sum(nodejs_active_handles)`).
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ])
      registry.removeSingleMetric(name);
  }
  const timeoutMs = options.collectTimeoutMs ?? 2000;
  let collectors: MetricsCollectors = { ...options.collectors };
  const registers = [registry];

  // One refresh per scrape, shared by every gauge's (and the error counter's) `collect`, so the
  // error count a scrape shows is that of its own refresh.
  const refresh = scrapeTimeRefresh(registry, timeoutMs, (collect) =>
    Promise.all([
      collect("budget_remaining", collectors.budgetRemaining, (samples) => {
        budgetRemainingTokens.reset();
        budgetRemainingUsd.reset();
        for (const s of samples) {
          if (s.tokens !== null) budgetRemainingTokens.set({ scope: s.scope }, s.tokens);
          if (s.costMicroUsd !== null)
            budgetRemainingUsd.set({ scope: s.scope }, s.costMicroUsd / MICRO_USD_PER_USD);
        }
      }),
      collect("queue_depth", collectors.queueDepth, (counts) => {
        const shards = Array.isArray(counts)
          ? (counts as readonly ShardQueueDepth[])
          : [{ shard: 0, depth: counts as QueueDepth }];
        // Only the depth states, whatever else the collector's counts hold.
        for (const { shard, depth } of shards)
          for (const state of QUEUE_DEPTH_STATES)
            queueDepth.set({ state, shard: String(shard) }, depth[state] ?? 0);
      }),
      collect("approvals_pending", collectors.approvalsPending, (n) => approvalsPending.set(n)),
      collect("budget_allowances", collectors.budgetAllowances, (samples) => {
        // Every kind, 0 when none is held, so a series does not vanish between draws.
        const held = new Map(samples.map((h) => [h.kind, h]));
        for (const kind of BUDGET_SCOPE_KINDS) {
          const h = held.get(kind);
          allowancesOpen.set({ kind }, h?.open ?? 0);
          allowanceTokens.set({ kind }, h?.granted.tokens ?? 0);
          allowanceUsd.set({ kind }, (h?.granted.costMicroUsd ?? 0) / MICRO_USD_PER_USD);
        }
      }),
    ]),
  );

  new Counter({
    name: COLLECT_ERRORS_METRIC,
    help: "Scrape-time collectors that failed or timed out (their gauges keep the previous values).",
    labelNames: ["collector"] as const,
    registers,
    collect: refresh,
  });

  const tasks = new Counter({
    name: "agentry_tasks_total",
    help: "Finished task executions by outcome and tenant.",
    labelNames: ["outcome", "tenant"] as const,
    registers,
  });
  const taskDuration = new Histogram({
    name: "agentry_task_duration_seconds",
    help: "Wall time of one task execution (one job attempt), by outcome.",
    labelNames: ["outcome"] as const,
    buckets: options.taskDurationBuckets ?? TASK_BUCKETS,
    registers,
  });
  const modelCalls = new Counter({
    name: "agentry_model_calls_total",
    help: "Model calls by model and outcome (ok, error).",
    labelNames: ["model", "outcome"] as const,
    registers,
  });
  const modelCallDuration = new Histogram({
    name: "agentry_model_call_duration_seconds",
    help: "Duration of successful model calls, by model.",
    labelNames: ["model"] as const,
    buckets: options.modelCallDurationBuckets ?? MODEL_BUCKETS,
    registers,
  });
  const tokens = new Counter({
    name: "agentry_tokens_total",
    help: "Tokens used by tenant and kind (input excludes cache reads and writes).",
    labelNames: ["tenant", "kind"] as const,
    registers,
  });
  const costUsd = new Counter({
    name: "agentry_cost_usd_total",
    help: "Model cost in US dollars by tenant, as priced by the hooks' pricing.",
    labelNames: ["tenant"] as const,
    registers,
  });
  const toolCalls = new Counter({
    name: "agentry_tool_calls_total",
    help: "Tool calls by tool and decision (allow, deny, suspend).",
    labelNames: ["tool", "decision"] as const,
    registers,
  });
  const budgetRemainingTokens = new Gauge({
    name: "agentry_budget_remaining_tokens",
    help: "Tokens left under each budget scope's token limit, read from the ledger at scrape time.",
    labelNames: ["scope"] as const,
    registers,
    collect: refresh,
  });
  const budgetRemainingUsd = new Gauge({
    name: "agentry_budget_remaining_usd",
    help: "US dollars left under each budget scope's cost limit, read from the ledger at scrape time.",
    labelNames: ["scope"] as const,
    registers,
    collect: refresh,
  });
  const queueDepth = new Gauge({
    name: "agentry_queue_depth",
    help: "Task-queue jobs not yet finished, by state (waiting, active, delayed, prioritized) and queue shard, read at scrape time.",
    labelNames: ["state", "shard"] as const,
    registers,
    collect: refresh,
  });
  const approvalsPending = new Gauge({
    name: "agentry_approvals_pending",
    help: "Approvals awaiting a decision, read at scrape time.",
    registers,
    collect: refresh,
  });
  const allowancesOpen = new Gauge({
    name: "agentry_budget_allowances_open",
    help: "Budget allowances this process holds (drawn, not yet returned), by scope kind.",
    labelNames: ["kind"] as const,
    registers,
    collect: refresh,
  });
  const allowanceTokens = new Gauge({
    name: "agentry_budget_allowance_granted_tokens",
    help: "Tokens this process's open budget allowances hold reserved on the ledger, by scope kind.",
    labelNames: ["kind"] as const,
    registers,
    collect: refresh,
  });
  const allowanceUsd = new Gauge({
    name: "agentry_budget_allowance_granted_usd",
    help: "US dollars this process's open budget allowances hold reserved on the ledger, by scope kind.",
    labelNames: ["kind"] as const,
    registers,
    collect: refresh,
  });

  return {
    registry,
    tasks,
    taskDuration,
    modelCalls,
    modelCallDuration,
    tokens,
    costUsd,
    toolCalls,
    budgetRemainingTokens,
    budgetRemainingUsd,
    queueDepth,
    approvalsPending,
    recordTask({ outcome, tenant, durationMs }) {
      tasks.inc({ outcome, tenant });
      taskDuration.observe({ outcome }, durationMs / 1000);
    },
    recordCost(tenant, costMicroUsd) {
      costUsd.inc({ tenant }, costMicroUsd / MICRO_USD_PER_USD);
    },
    recordToolCall(tool, decision) {
      toolCalls.inc({ tool, decision });
    },
    setCollectors(next) {
      collectors = { ...collectors, ...next };
    },
    metricsText: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

/** The queue-depth collector for a BullMQ queue: its waiting, active, delayed and prioritized job counts. */
export function queueDepthOf(queue: {
  getJobCounts(...types: QueueDepthState[]): Promise<Record<string, number>>;
}): () => Promise<QueueDepth> {
  return async () => {
    const counts = await queue.getJobCounts(...QUEUE_DEPTH_STATES);
    return {
      waiting: counts.waiting ?? 0,
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      prioritized: counts.prioritized ?? 0,
    };
  };
}

/** The queue-depth collector for several queue shards: each shard's counts, labelled with its number. */
export function queueDepthOfShards(
  queues: readonly {
    shard: number;
    queue: { getJobCounts(...types: QueueDepthState[]): Promise<Record<string, number>> };
  }[],
): () => Promise<ShardQueueDepth[]> {
  return () =>
    Promise.all(queues.map(async ({ shard, queue }) => ({ shard, depth: await queueDepthOf(queue)() })));
}

/** The budget-remaining collector for a ledger: every scope it knows, with its remaining tokens and cost. */
export function budgetRemainingOf(
  ledger: Pick<BudgetLedger, "listScopes" | "getStats">,
): () => Promise<BudgetRemainingSample[]> {
  return async () => {
    const scopes = await ledger.listScopes();
    const stats = await Promise.all(scopes.map((s) => ledger.getStats(s)));
    return stats.map((s) => ({
      scope: s.scope,
      tokens: s.remaining.tokens,
      costMicroUsd: s.remaining.costMicroUsd,
    }));
  };
}
