// The producer process: the HTTP API in front of Agentry's queue. Configuration: see
// config/producer-env.ts (PORT, HOST, AGENTRY_API_KEYS, AGENTRY_API_KEYS_FILE,
// AGENTRY_INSECURE_DEV_KEY...) and the shared variables of @agentry/core.
import {
  AgentryError,
  checkClusterConfig,
  pinShardCount,
  createLogger,
  createRedis,
  describeSkew,
  assertNoEviction,
  unreachableNodes,
  keepClockSynced,
  packageVersion,
  redactRedisUrl,
  waitForReady,
  waitReplicasOf,
} from "@agentry/core";
import { RedisSessionTurns } from "@agentry/memory";
import {
  AgentryClient,
  createBullMQTelemetry,
  createMetrics,
  queueDepthOfShards,
  startTelemetry,
  traceLogMixin,
} from "@agentry/runtime";
import { buildProducerApp } from "./app.js";
import { SubmitRateLimiter } from "./rate-limit/submit-rate-limiter.js";
import {
  DEV_API_KEY,
  loadApiKeys,
  parseProducerEnv,
  type LoadedApiKeys,
  type ProducerEnv,
} from "./config/producer-env.js";

/** Configuration errors end the process with code 2 and one line naming the problem, like the worker's. */
function loadConfig(): { env: ProducerEnv; apiKeys: LoadedApiKeys } {
  try {
    const env = parseProducerEnv();
    return { env, apiKeys: loadApiKeys(env) };
  } catch (err) {
    process.stderr.write(`agentry-producer: ${AgentryError.from(err).message}\n`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const { env, apiKeys } = loadConfig();
  const logger = createLogger({
    name: "agentry-producer",
    level: env.LOG_LEVEL,
    redact: ["req.headers.authorization", "req.headers.cookie", "*.headers.cookie"],
    pinoOptions: { mixin: traceLogMixin() },
  });
  const { keys, devDefault } = apiKeys;
  if (devDefault) {
    logger.warn(
      { event: "insecure-dev-key" },
      "INSECURE: AGENTRY_INSECURE_DEV_KEY=1 and no API keys configured: anyone who can reach this port is admin with the well-known key `dev-key` (tenant `default`). " +
        "Set AGENTRY_API_KEYS or AGENTRY_API_KEYS_FILE before exposing this service.",
    );
  } else if (env.AGENTRY_INSECURE_DEV_KEY) {
    logger.warn(
      { event: "insecure-dev-key" },
      keys.has(DEV_API_KEY)
        ? "INSECURE: AGENTRY_INSECURE_DEV_KEY=1 and the well-known key `dev-key` is configured: anyone who knows the documentation can use it."
        : "AGENTRY_INSECURE_DEV_KEY is set but API keys are configured: only they are accepted, `dev-key` is not.",
    );
  }
  if (!env.AGENTRY_AUDIT_KEY) {
    logger.warn(
      "AGENTRY_AUDIT_KEY is not set: audit entries are not authenticated. Give the producer, the workers and the CLI the same key.",
    );
  }

  // Before any queue exists, so bullmq-otel's producer spans have a provider.
  const telemetry = startTelemetry({
    serviceName: "agentry-producer",
    serviceVersion: packageVersion(new URL("../package.json", import.meta.url)),
    otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT,
    otlpTracesEndpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
  });
  const turnsRedis = createRedis({
    url: env.REDIS_URL,
    role: "producer",
    connectionName: "agentry-producer-turns",
  });
  turnsRedis.on("error", (err: Error) => logger.debug({ err }, "session-turns connection error"));
  const client = new AgentryClient({
    url: env.REDIS_URL,
    prefix: env.AGENTRY_PREFIX,
    shards: env.AGENTRY_SHARDS,
    sessionOrder: (prefix) => new RedisSessionTurns({ redis: turnsRedis, prefix }),
    telemetry: createBullMQTelemetry(),
    fairShare: env.AGENTRY_FAIR_SHARE === "on",
    waitReplicas: waitReplicasOf(env),
  });
  const ready = await waitForReady(turnsRedis, 5_000).then(
    () => true,
    () => {
      logger.warn(
        { redis: redactRedisUrl(env.REDIS_URL) },
        "Redis is not answering yet; submissions answer 503 until it does",
      );
      return false;
    },
  );
  // A prefix that does not fit the Redis topology stops the producer with one line.
  if (ready)
    await checkClusterConfig(
      turnsRedis as unknown as Parameters<typeof checkClusterConfig>[0],
      env.AGENTRY_PREFIX,
    )
      // So does a shard count other than the deployment's (its tasks would go where no worker looks).
      .then(() => pinShardCount(turnsRedis, env.AGENTRY_PREFIX, env.AGENTRY_SHARDS))
      // And a Redis that evicts keys: a submitted task, its session order or its audit entry could vanish.
      .then(() => assertNoEviction(turnsRedis))
      .then((states) => {
        for (const { node, unreachable } of unreachableNodes(states))
          logger.warn(
            { event: "redis-node-unreachable", node, err: unreachable },
            `Redis at ${node} did not answer: its eviction setting could not be read at start`,
          );
      })
      .catch((err: unknown) => {
        if (!AgentryError.isInstance(err) || err.code !== "INVALID_CONFIG") return;
        process.stderr.write(`agentry-producer: ${err.message}\n`);
        process.exit(2);
      });

  // Timestamps the producer writes (audit entries, submissions) are in Redis's time, as the workers' are.
  let stopClockSync: (() => void) | undefined;
  const syncClockWithRedis = () =>
    keepClockSynced(turnsRedis, {
      onSkew: ({ offsetMs }) =>
        logger.warn(
          { event: "clock-skew", offsetMs },
          `this host's clock is ${describeSkew(offsetMs)}: Agentry uses Redis's time; fix the host's time sync`,
        ),
      onError: (err) => logger.debug({ err }, "clock sync failed"),
    }).then(
      (stop) => void (stopClockSync = stop),
      (err: unknown) => logger.warn({ err }, "clock sync failed; this host's clock is used"),
    );
  if (ready) await syncClockWithRedis();
  else turnsRedis.once("ready", () => void syncClockWithRedis());

  const metrics = createMetrics({
    defaultLabels: { service: "agentry-producer" },
    collectors: {
      queueDepth: queueDepthOfShards(client.shards.map((s) => ({ shard: s.index, queue: s.queue }))),
    },
  });
  const submitRateLimiter =
    env.AGENTRY_SUBMIT_RATE > 0
      ? new SubmitRateLimiter({
          redis: turnsRedis,
          prefix: env.AGENTRY_PREFIX,
          perSecond: env.AGENTRY_SUBMIT_RATE,
          burst: env.AGENTRY_SUBMIT_BURST,
        })
      : undefined;
  if (!submitRateLimiter)
    logger.warn(
      { event: "submit-rate-unlimited" },
      "AGENTRY_SUBMIT_RATE=0: tenants' submissions are not rate-limited",
    );
  const app = await buildProducerApp({
    client,
    apiKeys: keys,
    logger,
    metrics,
    bodyLimitBytes: env.AGENTRY_BODY_LIMIT_BYTES,
    eventsTokens: {
      ttlMs: env.AGENTRY_EVENTS_TOKEN_TTL_SECONDS * 1000,
      ...(env.AGENTRY_EVENTS_TOKEN_SECRET ? { secret: env.AGENTRY_EVENTS_TOKEN_SECRET } : {}),
    },
    ...(submitRateLimiter ? { submitRateLimiter } : {}),
  });
  await app.listen({ port: env.PORT, host: env.HOST });
  logger.info(
    {
      port: env.PORT,
      host: env.HOST,
      prefix: env.AGENTRY_PREFIX,
      shards: env.AGENTRY_SHARDS,
      apiKeys: keys.size,
      tracing: telemetry.exporting,
      submitRate: submitRateLimiter
        ? { perSecond: submitRateLimiter.perSecond, burst: submitRateLimiter.burst }
        : "unlimited",
    },
    "producer listening",
  );

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
      stopClockSync?.();
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
