export { canonicalJson } from "./canonical-json.js";
export * from "./policies/index.js";
export * from "./approvals/index.js";
export * from "./audit/index.js";
export * from "./notifiers/index.js";
export * from "./hooks/index.js";
