/**
 * `@agentry/core/base`: the part of core that loads no third-party package (no ioredis, pino or
 * zod), for code whose start-up time matters and that only throws and checks errors, validates
 * ids or reads constants: the `agentry` CLI answers `--version` and `--help` from here alone.
 * Everything in it is also exported by `@agentry/core`.
 */
export {
  AgentryError,
  ERROR_CODES,
  isAgentryError,
  isNoScriptError,
  isTransientRedisError,
  type AgentryErrorData,
  type AgentryErrorOptions,
  type ErrorCategory,
  type ErrorCode,
} from "./errors/agentry-error.js";
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
export {
  describeSkew,
  keepClockSynced,
  syncClock,
  systemClock,
  sleep,
  unsyncClock,
  withTimeout,
  type Clock,
  type ClockReading,
  type ClockSyncOptions,
  type TimeSource,
} from "./clock.js";
export { positiveInt } from "./validate.js";
export { packageVersion } from "./package-version.js";
export { redactRedisUrl } from "./redis/redact-url.js";
