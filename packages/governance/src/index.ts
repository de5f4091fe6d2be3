export { canonicalJson } from "./canonical-json.js";
export * from "./policies/index.js";
