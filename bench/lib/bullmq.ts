/**
 * BullMQ as @agentry/runtime resolves it (the same copy and version), for the bare-BullMQ
 * baselines. bench/ is not a workspace package, so a bare `bullmq` import does not resolve here.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type * as BullMQ from "bullmq";

const requireFromRuntime = createRequire(
  fileURLToPath(new URL("../../packages/runtime/package.json", import.meta.url)),
);

/** The `bullmq` module of @agentry/runtime. */
export const bullmq = requireFromRuntime("bullmq") as typeof BullMQ;

/** Its version, for the report. */
export const bullmqVersion = (requireFromRuntime("bullmq/package.json") as { version: string }).version;
