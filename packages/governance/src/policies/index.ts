export type { Action, PolicyContext, Policy, ValidationResult } from "./types.js";
export { SafetyValidator, mergeVerdicts, type SafetyValidatorOptions } from "./validator.js";
export { noProductionDelete, type NoProductionDeleteOptions } from "./no-production-delete.js";
export { toolAllowList, toolDenyList, type ToolListOptions } from "./tool-lists.js";
export { canonicalText, canonicalName, textWords } from "./normalise.js";
export { EnvironmentAliases, DEFAULT_ENVIRONMENT_ALIASES } from "./environments.js";
export {
  actionFacts,
  isDestructive,
  soundsDestructive,
  DESTRUCTIVE_WORDS,
  type ActionFacts,
} from "./action-meaning.js";
export {
  matchPolicy,
  actionMatcher,
  type ActionMatch,
  fieldEquals,
  fieldIn,
  fieldMatches,
  type FieldCondition,
  type ToolSelector,
  type RuleOutcome,
  type MatchPolicyOptions,
} from "./match-policy.js";
export { rateCap, type RateCapOptions } from "./rate-cap.js";
export {
  parsePolicyFile,
  loadPolicyFile,
  policyFileSchema,
  ALL_APPROVERS,
  DEFAULT_POLICY_FILE,
  DEFAULT_DENY_POLICY,
  type PolicyFile,
  type PolicyFileOptions,
} from "./policy-file.js";
