import type { FastifyInstance } from "fastify";
import { AgentryError } from "@agentry/core";
import { taskStateOf, type AgentryClient } from "@agentry/runtime";
import { principalOf } from "../auth/authenticate.js";
import { groupIdParam } from "../http/id-params.js";
import { parseBody, submitTaskGroupBodySchema } from "../http/schemas.js";
import type { SubmitRateLimiter } from "../rate-limit/submit-rate-limiter.js";
import { rejectOversizedPrompt } from "./tasks.js";

/**
 * `POST /v1/task-groups` (fan-out) and `GET /v1/task-groups/:id`. Needs the API auth hook in scope.
 * With a limiter, a valid group takes one token of its tenant per task, all or none.
 */
export function registerTaskGroupRoutes(
  app: FastifyInstance,
  client: AgentryClient,
  limiter?: SubmitRateLimiter,
): void {
  app.post("/v1/task-groups", async (request, reply) => {
    const { tenant } = principalOf(request);
    const tasks = (request.body as { tasks?: unknown } | null)?.tasks;
    if (Array.isArray(tasks)) tasks.forEach((task, i) => rejectOversizedPrompt(task, `tasks.${i}.prompt`));
    const body = parseBody(submitTaskGroupBodySchema, request.body);
    // Group children get fresh ids; a key would promise a deduplication that does not happen.
    const keyed = body.tasks.flatMap((t, i) => (t.idempotencyKey === undefined ? [] : [i]));
    if (keyed.length > 0) {
      const fields = keyed.map((i) => ({
        path: `tasks.${i}.idempotencyKey`,
        message: "not supported inside a group",
      }));
      throw new AgentryError("INVALID_INPUT", "Idempotency keys are not supported inside a group", {
        details: { fields },
      });
    }
    await limiter?.take(tenant, body.tasks.length);
    const submitted = await client.submitGroup(
      body.tasks,
      { tenant },
      body.failurePolicy ? { failurePolicy: body.failurePolicy } : {},
    );
    const statusUrl = `/v1/task-groups/${encodeURIComponent(submitted.groupId)}`;
    request.log.info({ groupId: submitted.groupId, tasks: submitted.taskIds.length }, "task group submitted");
    return reply
      .code(202)
      .header("location", statusUrl)
      .send({ ...submitted, statusUrl });
  });

  app.get<{ Params: { id: string } }>("/v1/task-groups/:id", async (request) => {
    const { tenant } = principalOf(request);
    const groupId = groupIdParam(request.params.id);
    const group = await client.groupResult(groupId, { tenant });
    return {
      groupId,
      state: taskStateOf(group.state as Parameters<typeof taskStateOf>[0], undefined),
      ...(group.result ? { result: group.result } : {}),
      ...(group.failedReason ? { failedReason: group.failedReason } : {}),
    };
  });
}
