/** A task's progress as the worker reports it (BullMQ job progress); `status` and `watch` read it back. */
export interface TaskProgress {
  step: number;
  phase: "model" | "tool" | "awaiting_approval" | "parked" | "done";
  tool?: string;
  approvalIds?: string[];
  reason?: string;
}
