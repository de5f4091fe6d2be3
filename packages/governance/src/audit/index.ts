export { GENESIS_HASH, type AuditEntry } from "./entries.js";
export { redactSecrets, REDACTED } from "./redact.js";
export {
  entryHash,
  ChainVerifier,
  type AnchorPoint,
  type ChainBreak,
  type ChainVerifierOptions,
  type VerifyResult,
} from "./chain.js";
export { AuditKeyring, MIN_AUDIT_KEY_LENGTH, type AuditKey } from "./audit-key.js";
export {
  ANCHOR_KIND,
  anchorLine,
  anchorSetLine,
  parseAnchors,
  readAnchors,
  type AnchorFile,
  type AuditAnchor,
  type AuditAnchorSet,
} from "./anchors.js";
export {
  AuditLog,
  anchorChains,
  archiveChains,
  verifyChainsWithAnchors,
  verifyJsonl,
  type ChainsFailure,
  type AuditLogOptions,
  type AuditRewind,
  type AppendResult,
  type AnchorResult,
} from "./audit-log.js";
export { acquireAuditLane, type AuditLaneLease, type AuditLaneOptions } from "./audit-lane.js";
