import type { Job, JobState } from "bullmq";
import { AgentryError, type AgentryErrorData } from "@agentry/core";
import type { AgentJobData, AgentTaskResult } from "../tasks/catalog.js";
import type { TaskProgress } from "../tasks/progress.js";

/** What `status` reports: the task states of docs/architecture.md. */
export type TaskState = "queued" | "running" | "awaiting_approval" | "completed" | "failed";

/** A task's status. */
export interface TaskStatus {
  taskId: string;
  state: TaskState;
  tenant: string;
  userId: string;
  sessionId: string;
  prompt: string;
  attempts: number;
  createdAt: number;
  finishedAt?: number;
  progress?: TaskProgress;
  /** Set while `awaiting_approval`. */
  approvalIds?: string[];
  result?: AgentTaskResult;
  error?: AgentryErrorData;
}

/** Maps a BullMQ job state (plus Agentry's parked reason) to a task state. */
export function taskStateOf(jobState: JobState | "unknown", data: AgentJobData | undefined): TaskState {
  switch (jobState) {
    case "completed":
      return "completed";
    case "failed":
      return "failed";
    case "active":
      return "running";
    case "delayed":
      return data?.parked?.reason === "approval" ? "awaiting_approval" : "queued";
    case "waiting-children":
      return "running";
    default:
      return "queued";
  }
}

/** Parses `[CODE] message` failure reasons written by the worker; falls back to INTERNAL. */
export function errorFromFailedReason(reason: string | undefined): AgentryErrorData {
  const match = /^\[([A-Z_]+)\] ([\s\S]*)$/.exec(reason ?? "");
  const code = match?.[1];
  const err = new AgentryError("INTERNAL", reason ?? "task failed");
  if (code && match) {
    try {
      return new AgentryError(code as AgentryError["code"], match[2] ?? "").toData();
    } catch {
      return err.toData();
    }
  }
  return err.toData();
}

/**
 * Builds a {@link TaskStatus} from a job. Pass the state read BEFORE the job was fetched when
 * you have it: the job's data is then at least as new as the state.
 */
export async function statusOfJob(
  job: Job<AgentJobData, AgentTaskResult>,
  jobState?: JobState | "unknown",
): Promise<TaskStatus> {
  const state = taskStateOf(jobState ?? (await job.getState()), job.data);
  const progress = typeof job.progress === "object" ? (job.progress as unknown as TaskProgress) : undefined;
  const status: TaskStatus = {
    taskId: job.id as string,
    state,
    tenant: job.data.payload.tenant,
    userId: job.data.payload.userId,
    sessionId: job.data.payload.sessionId,
    prompt: job.data.payload.prompt,
    attempts: job.attemptsStarted,
    createdAt: job.timestamp,
    ...(job.finishedOn ? { finishedAt: job.finishedOn } : {}),
    ...(progress ? { progress } : {}),
  };
  if (state === "awaiting_approval" && job.data.parked?.reason === "approval")
    status.approvalIds = job.data.parked.approvalIds;
  if (state === "completed") status.result = job.returnvalue;
  if (state === "failed") status.error = job.data.error ?? errorFromFailedReason(job.failedReason);
  return status;
}
