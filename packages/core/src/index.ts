export * from "./base.js";
export { agentryErrorDataSchema } from "./errors/agentry-error-schema.js";
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
  CLUSTER_SLOTS,
  MAX_SHARDS,
  checkClusterConfig,
  checkClusterPrefix,
  clusterSlot,
  hashTagOf,
  MAX_AUDIT_LANES,
  parseShardList,
  pinShardCount,
  shardCountKey,
  shardOfSession,
  shardPrefix,
  shardPrefixes,
  splitConcurrency,
} from "./redis/shards.js";
export {
  defineScripts,
  loadScripts,
  MAX_SCRIPT_RELOADS,
  scriptCommandName,
  type ScriptArg,
  type ScriptCall,
  type ScriptClient,
  type ScriptSignature,
  type ScriptSource,
  type Scripts,
} from "./redis/scripts.js";
export { fenceArgs, fenceGuardLua, type Fence } from "./redis/fence.js";
export {
  assertNoEviction,
  describeEviction,
  evictingNodes,
  readEvictionStates,
  readReplicaCounts,
  unreachableNodes,
  EVICTION_READ_TIMEOUT_MS,
  type EvictionState,
} from "./redis/eviction.js";
export { createLogger, DEFAULT_REDACT_PATHS, type CreateLoggerOptions, type Logger } from "./log/logger.js";
export { redactSecretText, REDACTED_TEXT } from "./log/redact-text.js";
export { RepeatedErrors, type RepeatedErrorsOptions } from "./log/repeated-errors.js";
export {
  parseEnv,
  parseEnvWith,
  agentryEnvSchema,
  envVar,
  envPositiveInt,
  envNonNegativeInt,
  waitReplicasOf,
  type AgentryEnv,
} from "./config/env.js";
export {
  AUDIT_ENTRY_TYPES,
  type AuditAppendOptions,
  type AuditContext,
  type AuditDataMap,
  type AuditEntryInput,
  type AuditEntryType,
  type AuditHold,
  type AuditRecord,
  type AuditRider,
  type AuditSink,
  type AuditUsage,
  type PolicyVerdict,
  type Verdict,
} from "./audit/audit-entry.js";
export { redactRedisUrl } from "./redis/redact-url.js";
export { awaitReplicas, type Replication } from "./redis/replication.js";
