export * from "./budget/index.js";
export * from "./tasks/catalog.js";
export { isGroupId, isTaskId, taskIdFor } from "./tasks/task-ids.js";
export {
  AgentryClient,
  type AgentryClientOptions,
  type ClientShard,
  type Caller,
  type SessionOrder,
  type SubmittedTask,
  type TaskEvent,
  type TaskFollowEvent,
} from "./client/agentry-client.js";
export {
  DEFAULT_TASK_STREAM_LIMITS,
  parseTaskStreamEntry,
  parseTaskStreamNotice,
  taskStreamKey,
  type TaskStreamEntry,
  type TaskStreamNotice,
  type TaskStreamRecord,
  type TaskStreamLimits,
  type TextDeltaEntry,
} from "./stream/task-stream.js";
export { StreamedText, type TextChange } from "./stream/streamed-text.js";
export { statusOfJob, taskStateOf, type TaskState, type TaskStatus } from "./client/task-status.js";
export type { TaskProgress } from "./tasks/progress.js";
export {
  AgentWorker,
  type AgentWorkerOptions,
  type QueueFailure,
  type Reconciler,
  type TaskExecution,
  type TaskHandler,
  type WakeSource,
  type WorkerControl,
  type WorkerHealth,
} from "./worker/agent-worker.js";
export type { TaskOutcome } from "./worker/job-outcome.js";
export { cancelChannel, cancelKey } from "./tasks/cancellation.js";
export {
  startTelemetry,
  AGENTRY_TRACER_NAME,
  type StartTelemetryOptions,
  type Telemetry,
} from "./telemetry/start-telemetry.js";
export { createBullMQTelemetry, type BullMQTelemetryOptions } from "./telemetry/bullmq-telemetry.js";
export {
  withAgentSpan,
  setAgentUsage,
  serializeSpanContext,
  linkFrom,
  markError,
  type AgentRun,
  type AgentSpanOptions,
} from "./telemetry/agent-span.js";
export { createTracingHooks, type TracingHooksOptions, type PricingFn } from "./telemetry/tracing-hooks.js";
export type { TelemetryHooks } from "./telemetry/hook-types.js";
export { GenAIAttr, GenAIOperation, AgentryAttr, usageAttributes } from "./telemetry/attributes.js";
export {
  traceLogMixin,
  createTaskLogger,
  startTaskLog,
  type TaskLog,
  type TaskLogIdentity,
  type TraceLogFields,
} from "./telemetry/task-log.js";
export {
  createMetrics,
  budgetRemainingOf,
  queueDepthOf,
  queueDepthOfShards,
  QUEUE_DEPTH_STATES,
  type AgentryMetrics,
  type BudgetAllowanceSample,
  type BudgetRemainingSample,
  type QueueDepth,
  type QueueDepthState,
  type ShardQueueDepth,
  type CreateMetricsOptions,
  type MetricsCollectors,
  type TaskMetricOutcome,
  type TokenKind,
} from "./metrics/metrics.js";
export { createMetricsHooks, type MetricsHooks, type MetricsHooksOptions } from "./metrics/metrics-hooks.js";
export {
  createAgentTaskHandler,
  DEFAULT_SYSTEM_PROMPT,
  taskAuditOnce,
  type AgentTaskHandlerOptions,
} from "./pipeline/agent-task-handler.js";
export {
  createBudgetHooks,
  defaultScopes,
  type BudgetHooksOptions,
  type CallPricing,
} from "./pipeline/budget-hooks.js";
export { RedisToolJournal } from "./pipeline/tool-journal.js";
export {
  FairShare,
  BULLMQ_PRIORITY_LIMIT,
  VIRTUAL_UNIT,
  type Admission,
  type FairShareOptions,
  type FairStamp,
  type Release,
  type TenantSlot,
} from "./fair/fair-share.js";
export {
  DEFAULT_TENANT_WEIGHT,
  MAX_RUNNING_LIMIT,
  TENANT_WEIGHT_RANGE,
  mergeTenantLoads,
  type TenantLoad,
  type TenantSettings,
  type TenantSettingsPatch,
} from "./fair/tenant-settings.js";
export {
  registerTenantLoadMetrics,
  type TenantLoadMetrics,
  type TenantLoadMetricsOptions,
} from "./metrics/tenant-load-metrics.js";
export { registerClockMetrics, type ClockState } from "./metrics/clock-metrics.js";
export { registerEvictionMetrics, type EvictionMetricsState } from "./metrics/eviction-metrics.js";
