// Child process for the multi-process race test: signs and submits one decision, prints the result type.
import { Redis } from "ioredis";
import { ApprovalStore } from "./approval-store.js";
import { parseApproversFile } from "./approvers-file.js";
import { signDecision } from "./signing.js";
import type { DecisionOutcome } from "./types.js";

const env = process.env;
const redis = new Redis(env.REDIS_URL as string, { maxRetriesPerRequest: 3 });
try {
  const store = new ApprovalStore({
    redis,
    prefix: env.PREFIX as string,
    approverKeys: parseApproversFile(env.APPROVERS as string),
  });
  const approver = env.APPROVER as string;
  // Line up with the siblings so the decisions really race.
  const startAt = Number(env.START_AT);
  while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
  const decision = signDecision(env.PRIVATE_KEY as string, {
    approvalId: env.APPROVAL_ID as string,
    approver,
    outcome: env.OUTCOME as DecisionOutcome,
    decidedAt: Date.now(),
    reason: `${approver} says ${env.OUTCOME}`,
  });
  const result = await store.tryDecide(decision);
  process.stdout.write(
    JSON.stringify({
      approver,
      outcome: env.OUTCOME,
      type: result.type,
      status: "status" in result ? result.status : undefined,
    }),
  );
} finally {
  redis.disconnect();
}
