import type { FastifyInstance } from "fastify";
import { AgentryError } from "@agentry/core";
import { MAX_PROMPT_CHARS, type AgentryClient } from "@agentry/runtime";
import { principalOf } from "../auth/authenticate.js";
import { taskIdParam } from "../http/id-params.js";
import { parseBody, submitTaskBodySchema } from "../http/schemas.js";
import type { SubmitRateLimiter } from "../rate-limit/submit-rate-limiter.js";

/** The header that carries an idempotency key. It wins over a body `idempotencyKey`. */
export const IDEMPOTENCY_HEADER = "idempotency-key";

/** Where a task's status and events are served. */
export const taskUrls = (taskId: string) => ({
  statusUrl: `/v1/tasks/${encodeURIComponent(taskId)}`,
  eventsUrl: `/v1/tasks/${encodeURIComponent(taskId)}/events`,
});

/**
 * `PAYLOAD_TOO_LARGE` (413) for a prompt over the runtime's limit, checked before field validation
 * so an oversized prompt is never reported as merely invalid.
 */
export function rejectOversizedPrompt(task: unknown, path = "prompt"): void {
  if (typeof task !== "object" || task === null) return;
  const prompt = (task as { prompt?: unknown }).prompt;
  if (typeof prompt === "string" && prompt.length > MAX_PROMPT_CHARS) {
    throw new AgentryError(
      "PAYLOAD_TOO_LARGE",
      `${path} is ${prompt.length} characters; the limit is ${MAX_PROMPT_CHARS}`,
    );
  }
}

/**
 * `POST /v1/tasks`, `GET /v1/tasks/:id`, `DELETE /v1/tasks/:id`. Needs the API auth hook in scope.
 * With a limiter, a valid submission first takes a token of its tenant (429 past the limit).
 */
export function registerTaskRoutes(
  app: FastifyInstance,
  client: AgentryClient,
  limiter?: SubmitRateLimiter,
): void {
  app.post("/v1/tasks", async (request, reply) => {
    const { tenant } = principalOf(request);
    rejectOversizedPrompt(request.body);
    const input = parseBody(submitTaskBodySchema, request.body);
    const headerKey = request.headers[IDEMPOTENCY_HEADER];
    if (typeof headerKey === "string") input.idempotencyKey = headerKey;
    await limiter?.take(tenant, 1);
    const submitted = await client.submit(input, { tenant });
    const urls = taskUrls(submitted.taskId);
    request.log.info(
      { taskId: submitted.taskId, sessionId: submitted.sessionId, deduplicated: submitted.deduplicated },
      "task submitted",
    );
    return reply
      .code(202)
      .header("location", urls.statusUrl)
      .send({ ...submitted, ...urls });
  });

  app.get<{ Params: { id: string } }>("/v1/tasks/:id", async (request) => {
    const { tenant } = principalOf(request);
    return client.status(taskIdParam(request.params.id), { tenant });
  });

  app.delete<{ Params: { id: string } }>("/v1/tasks/:id", async (request) => {
    const { tenant } = principalOf(request);
    const taskId = taskIdParam(request.params.id);
    const outcome = await client.cancel(taskId, { tenant });
    request.log.info({ taskId, ...outcome }, "task cancel requested");
    return { taskId, ...outcome };
  });
}
