export { createGovernanceHooks, APPROVAL_POLICY, type GovernanceHooksOptions } from "./governance-hooks.js";
