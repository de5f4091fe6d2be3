import { z } from "zod";
import { AgentryError, ERROR_CODES, agentryErrorDataSchema } from "@agentry/core";
import { agentTaskResultSchema, submitTaskInputSchema, type TaskStatus } from "@agentry/runtime";
import type { FieldError } from "./http-error.js";

/** Every schema the HTTP API describes in its OpenAPI document, by component id. */
export const httpSchemas = z.registry<{ id: string }>();

/**
 * The body of `POST /v1/tasks`: the shared submit schema, strict. Unknown fields are rejected,
 * `tenant` included: the tenant always comes from the API key.
 */
export const submitTaskBodySchema = submitTaskInputSchema
  .strict()
  .register(httpSchemas, { id: "SubmitTaskRequest" });

/** Largest fan-out group accepted in one request. */
export const MAX_GROUP_TASKS = 100;

/** The body of `POST /v1/task-groups`. */
export const submitTaskGroupBodySchema = z
  .strictObject({
    tasks: z.array(submitTaskBodySchema).min(1, "a group needs at least one task").max(MAX_GROUP_TASKS),
    /** `all-settled` (default): the group completes with each child's result or error; `fail-fast`: it fails with the first failed child. */
    failurePolicy: z.enum(["all-settled", "fail-fast"]).optional(),
  })
  .register(httpSchemas, { id: "SubmitTaskGroupRequest" });

/** 202 answer of `POST /v1/tasks`. */
export const submittedTaskSchema = z
  .object({
    taskId: z.string(),
    sessionId: z.string(),
    deduplicated: z
      .boolean()
      .describe("true when the idempotency key matched an existing task; nothing new was enqueued"),
    statusUrl: z.string(),
    eventsUrl: z.string(),
  })
  .register(httpSchemas, { id: "SubmittedTask" });

const taskProgressSchema = z.object({
  step: z.number().int(),
  phase: z.enum(["model", "tool", "awaiting_approval", "parked", "done"]),
  tool: z.string().optional(),
  approvalIds: z.array(z.string()).optional(),
  reason: z.string().optional(),
});

/** `GET /v1/tasks/:id`. Mirrors the runtime's `TaskStatus` (checked at compile time below). */
export const taskStatusSchema = z
  .object({
    taskId: z.string(),
    state: z.enum(["queued", "running", "awaiting_approval", "completed", "failed"]),
    tenant: z.string(),
    userId: z.string(),
    sessionId: z.string(),
    prompt: z.string(),
    attempts: z.number().int(),
    createdAt: z.number().int().describe("ms since the epoch"),
    finishedAt: z.number().int().optional(),
    progress: taskProgressSchema.optional(),
    approvalIds: z.array(z.string()).optional(),
    result: agentTaskResultSchema.optional(),
    error: agentryErrorDataSchema.optional(),
  })
  .register(httpSchemas, { id: "TaskStatus" });

// Fails to compile when the runtime's TaskStatus gains a field this description lacks.
type StatusDescribed = TaskStatus extends z.infer<typeof taskStatusSchema> ? true : false;
const _statusDescribed: StatusDescribed = true;
void _statusDescribed;

/** `DELETE /v1/tasks/:id`. */
export const cancelledTaskSchema = z
  .object({
    taskId: z.string(),
    cancelled: z.boolean(),
    state: z.string().describe("the state the task was in"),
  })
  .register(httpSchemas, { id: "CancelledTask" });

/** 202 answer of `POST /v1/task-groups`. */
export const submittedGroupSchema = z
  .object({ groupId: z.string(), taskIds: z.array(z.string()), statusUrl: z.string() })
  .register(httpSchemas, { id: "SubmittedTaskGroup" });

/** `GET /v1/task-groups/:id`. */
export const taskGroupStatusSchema = z
  .object({
    groupId: z.string(),
    state: z.enum(["queued", "running", "awaiting_approval", "completed", "failed"]),
    result: z
      .object({
        groupId: z.string(),
        children: z.array(
          z.union([
            z.object({ taskId: z.string(), status: z.literal("completed"), result: agentTaskResultSchema }),
            z.object({ taskId: z.string(), status: z.literal("failed"), error: z.string() }),
          ]),
        ),
      })
      .optional(),
    failedReason: z.string().optional(),
  })
  .register(httpSchemas, { id: "TaskGroupStatus" });

/** Every error answer. */
export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.enum(ERROR_CODES),
      message: z.string(),
      fields: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
      retryAfterMs: z.number().int().optional(),
    }),
  })
  .register(httpSchemas, { id: "Error" });

/** `POST /v1/tasks/:id/events-token`: a browser's way into one task's event stream. */
export const eventsTokenSchema = z
  .object({
    token: z.string(),
    expiresAt: z.string().describe("ISO 8601; a connection or reconnect after it answers 401"),
    eventsUrl: z.string().describe("The task's events URL with `?token=`: hand this to EventSource"),
  })
  .register(httpSchemas, { id: "EventsToken" });

/** `GET /healthz`. */
export const healthSchema = z
  .object({ ok: z.boolean(), redis: z.boolean() })
  .register(httpSchemas, { id: "Health" });

/** The `data` of each server-sent event of `GET /v1/tasks/:id/events`, by event name. */
export const taskEventSchema = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("status"), taskId: z.string(), status: taskStatusSchema }),
    z.object({ type: z.literal("progress"), taskId: z.string(), progress: taskProgressSchema }),
    z
      .object({
        type: z.literal("delta"),
        taskId: z.string(),
        step: z
          .number()
          .int()
          .positive()
          .describe("The model call (1-based, counted across attempts) the text belongs to"),
        offset: z
          .number()
          .int()
          .nonnegative()
          .describe("Length of the step's text before this piece (UTF-16 code units)"),
        text: z.string(),
      })
      .describe(
        "A piece of the model's text as it is generated: place it at `offset` in its step's text (offset 0 again = the step was generated anew; replace)",
      ),
    z.object({ type: z.literal("completed"), taskId: z.string(), result: agentTaskResultSchema }),
    z.object({ type: z.literal("failed"), taskId: z.string(), error: agentryErrorDataSchema }),
  ])
  .register(httpSchemas, { id: "TaskEvent" });

/**
 * Parses a request body with a zod schema. Failure → `INVALID_INPUT` listing every invalid field;
 * an unknown key is listed under its own path.
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const fields = fieldsOf(parsed.error);
  throw new AgentryError(
    "INVALID_INPUT",
    `Invalid request: ${fields.map((f) => `${f.path}: ${f.message}`).join("; ")}`,
    {
      details: { fields },
    },
  );
}

function fieldsOf(error: z.ZodError): FieldError[] {
  const fields: FieldError[] = [];
  for (const issue of error.issues) {
    const base = issue.path.map(String);
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const message =
          key === "tenant" ? "unknown field: the tenant comes from the API key" : "unknown field";
        fields.push({ path: [...base, key].join("."), message });
      }
    } else {
      fields.push({ path: base.join(".") || "(root)", message: issue.message });
    }
  }
  return fields;
}
