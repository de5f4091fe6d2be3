import { AgentryError, packageVersion } from "@agentry/core";
import { createBullMQTelemetry, createTaskLogger, startTelemetry } from "@agentry/runtime";
import { buildWorker } from "./build-worker.js";
import { parseWorkerConfig } from "./config.js";
import { startOpsServer } from "./http.js";

/**
 * The Agentry worker process. Reads the environment once, wires the reference worker, serves
 * /healthz and /metrics, and shuts down gracefully on SIGTERM/SIGINT.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = parseWorkerConfig();
  } catch (err) {
    process.stderr.write(`agentry-worker: ${AgentryError.from(err).message}\n`);
    process.exit(2);
  }
  const telemetry = startTelemetry({
    serviceName: "agentry-worker",
    serviceVersion: packageVersion(new URL("../package.json", import.meta.url)),
    ...(config.OTEL_EXPORTER_OTLP_ENDPOINT ? { otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT } : {}),
    ...(config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
      ? { otlpTracesEndpoint: config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT }
      : {}),
  });
  const logger = createTaskLogger({
    name: "agentry-worker",
    level: config.LOG_LEVEL,
    ...(config.AGENTRY_WORKER_NAME ? { base: { worker: config.AGENTRY_WORKER_NAME } } : {}),
  });
  let built;
  try {
    built = await buildWorker(config, { logger, telemetry: createBullMQTelemetry() });
  } catch (err) {
    const e = AgentryError.from(err);
    logger.fatal({ code: e.code, err: e.message }, "worker failed to start");
    process.stderr.write(`agentry-worker: ${e.message}\n`);
    await telemetry.shutdown();
    process.exit(2);
  }
  if (config.AGENTRY_LLM === "scripted") {
    logger.warn(
      { event: "scripted-model", llm: "scripted" },
      "AGENTRY_LLM=scripted: tasks are answered by the offline ScriptedModel with canned text, never by Claude",
    );
  }
  // The port is taken before any job is: a worker that cannot serve /healthz and /metrics stops
  // with one line (exit 2) without having claimed a task it would then abandon.
  let server;
  try {
    server =
      config.AGENTRY_WORKER_PORT > 0
        ? await startOpsServer({
            port: config.AGENTRY_WORKER_PORT,
            worker: built,
            metrics: built.metrics,
          })
        : undefined;
  } catch (err) {
    const e = AgentryError.from(err);
    logger.fatal(
      { code: e.code, err: e.message, port: config.AGENTRY_WORKER_PORT },
      "worker failed to start",
    );
    process.stderr.write(`agentry-worker: ${e.message}\n`);
    await built.close().catch(() => undefined);
    await telemetry.shutdown();
    process.exit(2);
  }
  try {
    await built.start();
  } catch (err) {
    const e = AgentryError.from(err);
    logger.fatal({ code: e.code, err: e.message }, "worker failed to start");
    process.stderr.write(`agentry-worker: ${e.message}\n`);
    server?.close();
    await built.close().catch(() => undefined);
    await telemetry.shutdown();
    process.exit(2);
  }
  logger.info(
    {
      event: "worker-started",
      concurrency: config.AGENTRY_CONCURRENCY,
      shards: config.AGENTRY_WORKER_SHARDS,
      llm: config.AGENTRY_LLM,
      port: config.AGENTRY_WORKER_PORT,
    },
    "worker started",
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: "worker-stopping", signal }, "worker stopping");
    server?.close();
    await built.close();
    await telemetry.shutdown();
    logger.info({ event: "worker-stopped" }, "worker stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

void main();
