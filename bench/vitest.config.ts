import { agentryVitestConfig } from "../vitest.shared.ts";

export default agentryVitestConfig();
