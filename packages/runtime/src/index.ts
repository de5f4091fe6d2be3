export * from "./budget/index.js";
export * from "./tasks/catalog.js";
export { taskIdFor } from "./tasks/task-ids.js";
export { AgentryClient, type AgentryClientOptions, type Caller, type SessionOrder, type SubmittedTask, type TaskEvent } from "./client/agentry-client.js";
export { statusOfJob, taskStateOf, type TaskProgress, type TaskState, type TaskStatus } from "./client/task-status.js";
export { AgentWorker, type AgentWorkerOptions, type TaskExecution, type TaskHandler, type WorkerHealth } from "./worker/agent-worker.js";
export type { TaskOutcome } from "./worker/job-outcome.js";
export { cancelChannel, cancelKey } from "./worker/cancellation.js";
