export {
  AUDIT_ENTRY_TYPES,
  GENESIS_HASH,
  type AuditDataMap,
  type AuditEntryType,
  type AuditContext,
  type AuditEntryInput,
  type AuditEntry,
} from "./entries.js";
export { redactSecrets, REDACTED } from "./redact.js";
export { entryHash, ChainVerifier, type ChainBreak, type VerifyResult } from "./chain.js";
export { AuditLog, verifyJsonl, type AuditLogOptions, type AppendResult } from "./audit-log.js";
