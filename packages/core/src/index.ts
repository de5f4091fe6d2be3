export {
  AgentryError,
  ERROR_CODES,
  agentryErrorDataSchema,
  isAgentryError,
  type AgentryErrorData,
  type AgentryErrorOptions,
  type ErrorCategory,
  type ErrorCode,
} from "./errors/agentry-error.js";
export {
  createRedis,
  duplicateRedis,
  parseRedisTarget,
  redisOptionsFor,
  waitForReady,
  DEFAULT_REDIS_URL,
  type CreateRedisOptions,
  type RedisRole,
  type RedisTarget,
} from "./redis/connection.js";
export { keySpace, DEFAULT_KEY_PREFIX, type KeySpace } from "./redis/keys.js";
export {
  defineScripts,
  scriptCommandName,
  type ScriptArg,
  type ScriptCall,
  type ScriptClient,
  type ScriptSignature,
  type ScriptSource,
  type Scripts,
} from "./redis/scripts.js";
export { fenceArgs, fenceGuardLua, type Fence } from "./redis/fence.js";
export { createLogger, DEFAULT_REDACT_PATHS, type CreateLoggerOptions, type Logger } from "./log/logger.js";
export { redactSecretText, REDACTED_TEXT } from "./log/redact-text.js";
export {
  parseEnv,
  parseEnvWith,
  agentryEnvSchema,
  envVar,
  envPositiveInt,
  envNonNegativeInt,
  type AgentryEnv,
} from "./config/env.js";
export { durationMs } from "./config/durations.js";
export { newId, newToken } from "./ids.js";
export {
  TENANT_ID_PATTERN,
  TENANT_ID_RULE,
  isTenantId,
  tenantOwnedId,
  tenantScope,
  type TenantOwnedKind,
} from "./tenancy.js";
export { systemClock, sleep, withTimeout, type Clock } from "./clock.js";
export { positiveInt } from "./validate.js";
export {
  AUDIT_ENTRY_TYPES,
  type AuditAppendOptions,
  type AuditContext,
  type AuditDataMap,
  type AuditEntryInput,
  type AuditEntryType,
  type AuditRecord,
  type AuditSink,
  type AuditUsage,
  type PolicyVerdict,
  type Verdict,
} from "./audit/audit-entry.js";
export { packageVersion } from "./package-version.js";
