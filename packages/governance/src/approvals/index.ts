export type {
  ApprovalStatus,
  DecisionOutcome,
  SignedDecision,
  ApprovalDecision,
  ApprovalRecord,
  ApprovalResolvedEvent,
  DecideResult,
} from "./types.js";
export {
  generateApproverKeyPair,
  encodePublicKey,
  parsePublicKey,
  decisionPayload,
  signDecision,
  verifyDecision,
  DECISION_PAYLOAD_TAG,
  type ApproverKeys,
} from "./signing.js";
export { parseApproversFile, loadApproversFile } from "./approvers-file.js";
export {
  ApprovalStore,
  approvalIdFor,
  type ApprovalStoreOptions,
  type ApprovalRequest,
} from "./approval-store.js";
