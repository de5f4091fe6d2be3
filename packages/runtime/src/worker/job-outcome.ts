import type { AgentTaskResult, Parked } from "../tasks/catalog.js";

/** What a task handler decided. Errors are thrown as AgentryError instead. */
export type TaskOutcome =
  | { type: "completed"; result: AgentTaskResult }
  /** Park the job in BullMQ's delayed set until `parked.until` (or until promoted). Frees the slot. */
  | { type: "park"; parked: Parked };
