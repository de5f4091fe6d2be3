// The producer process: the HTTP API in front of Agentry's queue. Configuration: see
// config/producer-env.ts (PORT, HOST, AGENTRY_API_KEYS, AGENTRY_API_KEYS_FILE) and DESIGN.md.
import { createLogger, createRedis, waitForReady } from "@agentry/core";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient, createBullMQTelemetry, createMetrics, startTelemetry, traceLogMixin } from "@agentry/runtime";
import { buildProducerApp } from "./app.js";
import { loadApiKeys, parseProducerEnv } from "./config/producer-env.js";

async function main(): Promise<void> {
  const env = parseProducerEnv();
  const logger = createLogger({
    name: "agentry-producer",
    level: env.LOG_LEVEL,
    redact: ["req.headers.authorization", "req.headers.cookie", "*.headers.cookie"],
    pinoOptions: { mixin: traceLogMixin() },
  });
  const { keys, devDefault } = loadApiKeys(env);
  if (devDefault) {
    logger.warn(
      "NO API KEYS CONFIGURED: accepting only the development key `dev-key` (tenant `default`, admin). " +
        "Set AGENTRY_API_KEYS or AGENTRY_API_KEYS_FILE before exposing this service.",
    );
  }

  // Before any queue exists, so bullmq-otel's producer spans have a provider.
  const telemetry = startTelemetry({ serviceName: "agentry-producer", otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT });
  const turnsRedis = createRedis({ url: env.REDIS_URL, role: "producer", connectionName: "agentry-producer-turns" });
  turnsRedis.on("error", (err: Error) => logger.debug({ err }, "session-turns connection error"));
  const client = new AgentryClient({
    url: env.REDIS_URL,
    prefix: env.AGENTRY_PREFIX,
    sessionOrder: new RedisSessionTurns({ redis: turnsRedis, prefix: env.AGENTRY_PREFIX }),
    telemetry: createBullMQTelemetry(),
  });
  await waitForReady(turnsRedis, 5_000).catch(() => logger.warn({ redis: env.REDIS_URL }, "Redis is not answering yet; submissions answer 503 until it does"));

  const metrics = createMetrics({
    defaultLabels: { service: "agentry-producer" },
    collectors: { queueDepth: () => client.queue.getJobCounts() },
  });
  const app = await buildProducerApp({ client, apiKeys: keys, logger, metrics, bodyLimitBytes: env.AGENTRY_BODY_LIMIT_BYTES });
  await app.listen({ port: env.PORT, host: env.HOST });
  logger.info({ port: env.PORT, host: env.HOST, prefix: env.AGENTRY_PREFIX, apiKeys: keys.size, tracing: telemetry.exporting }, "producer listening");

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down: no new connections, closing event streams");
    const force = setTimeout(() => {
      logger.error("shutdown took longer than 10 s; exiting");
      process.exit(1);
    }, 10_000);
    force.unref();
    try {
      await app.close();
      await client.close();
      await turnsRedis.quit().catch(() => turnsRedis.disconnect());
      await telemetry.shutdown();
      logger.info("producer stopped");
      process.exitCode = 0;
    } catch (err) {
      logger.error({ err }, "shutdown failed");
      process.exitCode = 1;
    }
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
