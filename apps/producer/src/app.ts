import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "@agentry/core";
import type { AgentryClient, AgentryMetrics } from "@agentry/runtime";
import { ApiKeyAuthenticator, type ApiKeys } from "./auth/api-keys.js";
import { apiAuth, eventsAuth } from "./auth/authenticate.js";
import { EventsTokens, type EventsTokensOptions } from "./auth/events-token.js";
import { BOARD_PATH, registerBullBoard } from "./board/bull-board.js";
import type { SubmitRateLimiter } from "./rate-limit/submit-rate-limiter.js";
import { httpErrorOf } from "./http/http-error.js";
import { answerOversizedBodies } from "./http/oversized-body.js";
import { buildOpenApiDocument } from "./openapi/openapi-document.js";
import { registerServiceRoutes } from "./routes/service.js";
import {
  DEFAULT_EVENTS_RETRY_MS,
  registerEventsTokenRoute,
  registerTaskEventRoutes,
} from "./routes/task-events.js";
import { registerTaskGroupRoutes } from "./routes/task-groups.js";
import { registerTaskRoutes } from "./routes/tasks.js";

/** Largest request body accepted by default: room for a maximal prompt in multi-byte UTF-8. */
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;

/** Options for {@link buildProducerApp}. */
export interface ProducerAppOptions {
  /** The producer client (submit, status, watch, cancel). The app does not close it. */
  client: AgentryClient;
  /** API key → tenant. Every /v1 route and Bull Board need one of these keys. */
  apiKeys: ApiKeys;
  /** Fastify's logger (pino, e.g. `createLogger` of @agentry/core). */
  logger: Logger;
  /** Larger bodies answer 413 `PAYLOAD_TOO_LARGE`. @defaultValue {@link DEFAULT_BODY_LIMIT_BYTES} */
  bodyLimitBytes?: number;
  /** Interval of heartbeat comments on event streams. @defaultValue 15_000 */
  eventsHeartbeatMs?: number;
  /** The `retry:` field of event streams: an EventSource's reconnect delay. @defaultValue {@link DEFAULT_EVENTS_RETRY_MS} */
  eventsRetryMs?: number;
  /**
   * Signing of the browser tokens for event streams (`POST /v1/tasks/:id/events-token`).
   * @defaultValue a random per-process secret (logged as a warning): tokens work on this replica only
   */
  eventsTokens?: EventsTokensOptions;
  /** Serves `GET /metrics` from these metrics. @defaultValue none: no /metrics route */
  metrics?: AgentryMetrics;
  /** Per-tenant submit rate limit (429 `RATE_LIMITED` past it). @defaultValue none: no limit */
  submitRateLimiter?: SubmitRateLimiter;
  /** Mount Bull Board at `/admin/queues`. @defaultValue true */
  bullBoard?: boolean;
  /** Version reported by the OpenAPI document. @defaultValue `0.1.0` */
  version?: string;
  /** Internal. For test use only. May change without notice. */
  _internal?: { streams?: Set<AbortController> };
}

/** Removes the value of `key` (the Bull Board login) and `token` (an events token) query parameters from a logged URL. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:key|token)=)[^&#]*/gi, "$1[redacted]");
}

/**
 * Builds the producer's HTTP API (not listening: call `listen`, or `inject` in tests).
 *
 * Routes: `POST /v1/tasks`, `GET|DELETE /v1/tasks/:id`, `GET /v1/tasks/:id/events` (SSE),
 * `POST /v1/tasks/:id/events-token`, `POST /v1/task-groups`, `GET /v1/task-groups/:id` (bearer key), Bull Board at `/admin/queues`
 * (bearer key or login cookie), `GET /healthz`, `GET /openapi.json`, `GET /metrics` (open).
 * Every error answers `{ error: { code, message, fields? } }` with the status of `httpErrorOf`.
 * Closing the app ends open event streams.
 */
export async function buildProducerApp(options: ProducerAppOptions): Promise<FastifyInstance> {
  const auth = new ApiKeyAuthenticator(options.apiKeys);
  const streams = options._internal?.streams ?? new Set<AbortController>();
  const bullBoard = options.bullBoard ?? true;
  const tokens = new EventsTokens(options.eventsTokens);
  if (tokens.ephemeral) {
    options.logger.warn(
      { event: "events-token-ephemeral-secret" },
      "AGENTRY_EVENTS_TOKEN_SECRET is not set: events tokens are signed with a random secret of this process and work on this replica only",
    );
  }
  const loggerInstance = options.logger.child(
    {},
    {
      serializers: {
        req: (req: { method?: string; url?: string; ip?: string }) => ({
          method: req.method,
          url: redactUrl(req.url ?? ""),
          remoteAddress: req.ip,
        }),
      },
    },
  );
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const app = Fastify({
    // Typed as Fastify's base logger so the instance is a plain FastifyInstance for route modules.
    loggerInstance: loggerInstance as FastifyBaseLogger,
    bodyLimit,
    // Keep-alive connections must not hold a graceful close open.
    forceCloseConnections: "idle",
  });

  answerOversizedBodies(app, bodyLimit);
  app.setErrorHandler((err, request, reply) => {
    const { status, body, headers } = httpErrorOf(err);
    if (status >= 500 && body.error.code !== "REDIS_UNAVAILABLE")
      request.log.error({ err }, "request failed");
    else request.log.info({ code: body.error.code, status }, "request refused");
    return reply.code(status).headers(headers).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? "";
    return reply
      .code(404)
      .send({ error: { code: "NOT_FOUND", message: `No route ${request.method} ${path}` } });
  });
  app.addHook("preClose", async () => {
    for (const stream of streams) stream.abort();
  });

  const openapi = buildOpenApiDocument({
    version: options.version,
    metrics: options.metrics !== undefined,
    ...(bullBoard ? { boardPath: BOARD_PATH } : {}),
  });
  registerServiceRoutes(app, { client: options.client, openapi, metrics: options.metrics });
  await app.register(async (api) => {
    api.addHook("onRequest", apiAuth(auth));
    registerTaskRoutes(api, options.client, options.submitRateLimiter);
    registerEventsTokenRoute(api, options.client, tokens);
    registerTaskGroupRoutes(api, options.client, options.submitRateLimiter);
  });
  // Its own scope: the only route that also accepts an events token.
  await app.register(async (events) => {
    events.addHook("onRequest", eventsAuth(auth, tokens));
    registerTaskEventRoutes(events, {
      client: options.client,
      heartbeatMs: options.eventsHeartbeatMs ?? 15_000,
      retryMs: options.eventsRetryMs ?? DEFAULT_EVENTS_RETRY_MS,
      streams,
    });
  });
  if (bullBoard) await registerBullBoard(app, { queues: options.client.shards.map((s) => s.queue), auth });
  return app;
}
