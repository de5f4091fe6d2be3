import { agentryVitestConfig } from "../vitest.shared.ts";

export default agentryVitestConfig({ testTimeoutMs: 120_000 });
