export { demoRules } from "./demo-rules.js";
export { REFERENCE_ENVIRONMENTS, deletionsKey, referenceTools } from "./reference-tools.js";
