import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { withTimeout } from "@agentry/core";

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

/** One `agentry_budget_remaining` sample. */
export interface BudgetRemainingSample {
  /** `global`, `tenant:<t>`, `tenant:<t>:user:<u>` or `tenant:<t>:session:<s>`. */
  scope: string;
  unit: "tokens" | "micro_usd";
  remaining: number;
}

/**
 * Callbacks that read current values when `/metrics` is scraped. Each runs at most
 * `collectTimeoutMs`; a failure or timeout keeps the previous values and counts in
 * `agentry_metrics_collect_errors_total{collector}` (a scrape never fails because Redis is slow).
 */
export interface MetricsCollectors {
  /** Remaining budget per scope and unit (the ledger's `getStats`). Scopes not returned disappear. */
  budgetRemaining?: () => Promise<readonly BudgetRemainingSample[]>;
  /** Job counts by BullMQ state, e.g. `queue.getJobCounts()`. */
  queueDepth?: () => Promise<Record<string, number>>;
  /** Number of approvals awaiting a decision. */
  approvalsPending?: () => Promise<number>;
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
  readonly costMicroUsd: Counter<"tenant">;
  readonly toolCalls: Counter<"tool" | "decision">;
  readonly budgetRemaining: Gauge<"scope" | "unit">;
  readonly queueDepth: Gauge<"state">;
  readonly approvalsPending: Gauge;
  /** Counts one finished task execution and observes its duration. */
  recordTask(task: { outcome: TaskMetricOutcome; tenant: string; durationMs: number }): void;
  /** Counts one tool call (hooks see allow and deny; the worker reports `suspend` itself). */
  recordToolCall(tool: string, decision: "allow" | "deny" | "suspend"): void;
  /** Installs or replaces collectors (merged with the ones given so far). */
  setCollectors(collectors: MetricsCollectors): void;
  /** The exposition text for `GET /metrics`. */
  metricsText(): Promise<string>;
  /** The `Content-Type` of {@link metricsText}. */
  readonly contentType: string;
}

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
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const timeoutMs = options.collectTimeoutMs ?? 2000;
  let collectors: MetricsCollectors = { ...options.collectors };
  const registers = [registry];

  // One refresh per scrape: prom-client reads all metrics concurrently, and every gauge's (and the
  // error counter's) `collect` awaits the same in-flight refresh, so the error count is current.
  let inflight: Promise<void> | undefined;
  const refresh = (): Promise<void> => {
    inflight ??= Promise.all([
      runCollector("budget_remaining", collectors.budgetRemaining, (samples) => {
        budgetRemaining.reset();
        for (const s of samples) budgetRemaining.set({ scope: s.scope, unit: s.unit }, s.remaining);
      }),
      runCollector("queue_depth", collectors.queueDepth, (counts) => {
        queueDepth.reset();
        for (const [state, count] of Object.entries(counts)) queueDepth.set({ state }, count);
      }),
      runCollector("approvals_pending", collectors.approvalsPending, (n) => approvalsPending.set(n)),
    ]).then(
      () => {
        inflight = undefined;
      },
      () => {
        inflight = undefined;
      },
    );
    return inflight;
  };

  const collectErrors = new Counter({
    name: "agentry_metrics_collect_errors_total",
    help: "Scrape-time collectors that failed or timed out (their gauges keep the previous values).",
    labelNames: ["collector"] as const,
    registers,
    collect: refresh,
  });

  async function runCollector<T>(name: string, fn: (() => Promise<T>) | undefined, apply: (value: T) => void): Promise<void> {
    if (!fn) return;
    try {
      apply(await withTimeout(fn(), timeoutMs, `metrics collector ${name}`));
    } catch {
      collectErrors.inc({ collector: name });
    }
  }

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
  const costMicroUsd = new Counter({
    name: "agentry_cost_micro_usd_total",
    help: "Model cost in micro-USD by tenant.",
    labelNames: ["tenant"] as const,
    registers,
  });
  const toolCalls = new Counter({
    name: "agentry_tool_calls_total",
    help: "Tool calls by tool and decision (allow, deny, suspend).",
    labelNames: ["tool", "decision"] as const,
    registers,
  });
  const budgetRemaining = new Gauge({
    name: "agentry_budget_remaining",
    help: "Remaining budget by scope and unit (tokens, micro_usd), read from the ledger at scrape time.",
    labelNames: ["scope", "unit"] as const,
    registers,
    collect: refresh,
  });
  const queueDepth = new Gauge({
    name: "agentry_queue_depth",
    help: "Jobs in the task queue by state, read at scrape time.",
    labelNames: ["state"] as const,
    registers,
    collect: refresh,
  });
  const approvalsPending = new Gauge({
    name: "agentry_approvals_pending",
    help: "Approvals awaiting a decision, read at scrape time.",
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
    costMicroUsd,
    toolCalls,
    budgetRemaining,
    queueDepth,
    approvalsPending,
    recordTask({ outcome, tenant, durationMs }) {
      tasks.inc({ outcome, tenant });
      taskDuration.observe({ outcome }, durationMs / 1000);
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
