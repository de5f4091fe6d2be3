import type { FastifyInstance } from "fastify";
import { withTimeout } from "@agentry/core";
import type { AgentryClient, AgentryMetrics } from "@agentry/runtime";
import type { OpenApiDocument } from "../openapi/openapi-document.js";

/** How long `/healthz` waits for Redis to answer. */
export const HEALTH_TIMEOUT_MS = 2_000;

async function redisAnswers(client: AgentryClient): Promise<boolean> {
  try {
    // A real round trip through the queue's own connection (fail-fast producer settings).
    await withTimeout(client.queue.getJobCounts("wait"), HEALTH_TIMEOUT_MS, "redis health check");
    return true;
  } catch {
    return false;
  }
}

/** `GET /healthz`, `GET /openapi.json` and, with metrics, `GET /metrics`. No authentication. */
export function registerServiceRoutes(
  app: FastifyInstance,
  options: { client: AgentryClient; openapi: OpenApiDocument; metrics: AgentryMetrics | undefined },
): void {
  app.get("/healthz", async (_request, reply) => {
    const redis = await redisAnswers(options.client);
    return reply.code(redis ? 200 : 503).send({ ok: redis, redis });
  });

  app.get("/openapi.json", async () => options.openapi);

  const metrics = options.metrics;
  if (metrics) {
    app.get("/metrics", async (_request, reply) =>
      reply.header("content-type", metrics.contentType).send(await metrics.metricsText()),
    );
  }
}
