import type { AgentTaskResult, Parked } from "../tasks/catalog.js";

/** What a task handler decided. Errors are thrown as AgentryError instead. */
export type TaskOutcome =
  | {
      type: "completed";
      result: AgentTaskResult;
      /**
       * Keys (on the task's slot) to unlink once BullMQ has moved the job to completed: markers
       * that only guard the task's own retries (audit `once` markers), which no attempt can
       * reach any more. Until then, and if that never happens, they keep their TTL.
       */
      dropWhenCompleted?: string[];
    }
  /** Park the job in BullMQ's delayed set until `parked.until` (or until promoted). Frees the slot. */
  | { type: "park"; parked: Parked };
