import { z } from "zod";
import { errorBodySchema, httpSchemas } from "../http/schemas.js";
import { BOARD_COOKIE } from "../auth/authenticate.js";
import { IDEMPOTENCY_HEADER } from "../routes/tasks.js";

/** An OpenAPI 3.1 document (only the shape this module writes is typed). */
export interface OpenApiDocument {
  openapi: "3.1.0";
  info: { title: string; version: string; description: string };
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
  security: Record<string, string[]>[];
}

/** Options for {@link buildOpenApiDocument}. */
export interface OpenApiOptions {
  /** @defaultValue `0.1.0` */
  version?: string;
  /** Describe `GET /metrics`. @defaultValue false */
  metrics?: boolean;
  /** Describe Bull Board at this path. @defaultValue undefined (not described) */
  boardPath?: string;
}

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string) => ({ "application/json": { schema: ref(id) } });
const errorResponse = (description: string) => ({ description, content: json("Error") });
const idParam = (what: string) => ({
  name: "id",
  in: "path",
  required: true,
  schema: { type: "string" },
  description: `${what} id`,
});

const commonErrors = {
  "401": errorResponse("Missing or invalid API key (UNAUTHORIZED)"),
  "503": errorResponse("Redis is unavailable (REDIS_UNAVAILABLE); retry after the Retry-After header"),
  "500": errorResponse("Unexpected failure (INTERNAL)"),
};

/**
 * The OpenAPI 3.1 description of the producer's HTTP API. Request and response schemas are
 * generated from the same zod schemas the handlers validate with (JSON Schema 2020-12, which
 * OpenAPI 3.1 uses as is).
 */
export function buildOpenApiDocument(options: OpenApiOptions = {}): OpenApiDocument {
  void errorBodySchema; // registered in httpSchemas by import
  const generated = z.toJSONSchema(httpSchemas, {
    io: "input",
    unrepresentable: "any",
    uri: (id) => `#/components/schemas/${id}`,
  }) as { schemas: Record<string, Record<string, unknown>> };
  const schemas: Record<string, unknown> = {};
  for (const [id, schema] of Object.entries(generated.schemas)) {
    const { $schema: _s, id: _id, ...rest } = schema;
    schemas[id] = rest;
  }

  const paths: OpenApiDocument["paths"] = {
    "/v1/tasks": {
      post: {
        operationId: "submitTask",
        summary: "Submit an agent task",
        description:
          "Validates and enqueues one task for the API key's tenant (a `tenant` field is rejected: the tenant comes from the key). " +
          `An idempotency key (the \`Idempotency-Key\` header, which wins over the body's \`idempotencyKey\`) maps to one task: ` +
          "a repeat answers the first task's id with `deduplicated: true`.",
        parameters: [
          {
            name: IDEMPOTENCY_HEADER,
            in: "header",
            required: false,
            schema: { type: "string", minLength: 1, maxLength: 200 },
          },
        ],
        requestBody: { required: true, content: json("SubmitTaskRequest") },
        responses: {
          "202": {
            description: "Accepted",
            content: json("SubmittedTask"),
            headers: { Location: { schema: { type: "string" } } },
          },
          "400": errorResponse(
            "Invalid input (INVALID_INPUT) with `fields` listing every invalid field; also a body that is not JSON",
          ),
          "413": errorResponse("Body or prompt too large (PAYLOAD_TOO_LARGE)"),
          "429": errorResponse(
            "The tenant's submit rate limit is reached (RATE_LIMITED); wait `Retry-After` seconds",
          ),
          ...commonErrors,
        },
      },
    },
    "/v1/tasks/{id}": {
      get: {
        operationId: "getTask",
        summary: "A task's status",
        parameters: [idParam("Task")],
        responses: {
          "200": { description: "The task", content: json("TaskStatus") },
          "404": errorResponse("Unknown task, or another tenant's (NOT_FOUND)"),
          ...commonErrors,
        },
      },
      delete: {
        operationId: "cancelTask",
        summary: "Cancel a task",
        description:
          "A queued or parked task is removed at once; a running one is aborted by its worker and fails with CANCELLED.",
        parameters: [idParam("Task")],
        responses: {
          "200": { description: "Cancel requested", content: json("CancelledTask") },
          "404": errorResponse("Unknown task (NOT_FOUND)"),
          ...commonErrors,
        },
      },
    },
    "/v1/tasks/{id}/events": {
      get: {
        operationId: "streamTaskEvents",
        summary: "Server-sent events of a task",
        description:
          "text/event-stream for a standard EventSource. `retry:` first; then events, each with `event:` set to the `type`, `data:` the JSON of " +
          "`TaskEvent`, and `id:` the entry id (`<ms>-<seq>`) in the task's own Redis stream: stable across reconnects and replicas, increasing " +
          "within a task (compare as two numbers). Without `Last-Event-ID`: one `status` first (the task now, id `0-0`), then the task's " +
          "stream from its start (`progress`, and `delta` pieces of the model's text: the text so far), then live, then `completed` or " +
          "`failed`, and the server closes. A `delta` carries `{step, offset, text}`: place the text at its offset in its step's text; a step " +
          "generated again by a retried attempt starts over at offset 0 and replaces what was sent for it. With `Last-Event-ID`: the events " +
          "after it, with no repeat and no gap (a `status` first when they can no longer be replayed). A finished task's stream is its final " +
          "event alone; a reconnect with the final event's `Last-Event-ID` answers 204, which stops EventSource. No event is named `error`: a stream that fails is closed and the " +
          "reconnect resumes. A `: heartbeat` comment is sent every 15 s. Authenticate with the bearer key, or `?token=` from " +
          "`POST /v1/tasks/{id}/events-token` (browsers: EventSource cannot send headers).",
        parameters: [
          idParam("Task"),
          {
            name: "Last-Event-ID",
            in: "header",
            required: false,
            description: "Resume after this event (EventSource sends it on reconnect)",
            schema: { type: "string" },
          },
        ],
        security: [{ bearer: [] }, { eventsToken: [] }],
        responses: {
          "200": {
            description: "The event stream",
            content: { "text/event-stream": { schema: ref("TaskEvent") } },
          },
          "204": {
            description:
              "The task finished and `Last-Event-ID` is at or after its final event: nothing more will come",
          },
          "404": errorResponse(
            "Unknown task, another tenant's, or not the task the events token was minted for (NOT_FOUND)",
          ),
          ...commonErrors,
          "401": errorResponse(
            "Missing or invalid key, or an invalid, forged or expired events token (UNAUTHORIZED)",
          ),
        },
      },
    },
    "/v1/tasks/{id}/events-token": {
      post: {
        operationId: "createEventsToken",
        summary: "A short-lived token for a browser to read this task's events",
        description:
          "HMAC-signed, bound to the caller's tenant, this task and an expiry (10 minutes by default, `AGENTRY_EVENTS_TOKEN_TTL_SECONDS`). " +
          "Accepted as `?token=` on `GET /v1/tasks/{id}/events` only; checked at each (re)connect, an open stream is not cut at expiry. " +
          "Mint it on your backend and hand `eventsUrl` to the browser: the API key never reaches it.",
        parameters: [idParam("Task")],
        responses: {
          "200": { description: "The token", content: json("EventsToken") },
          "404": errorResponse("Unknown task, or another tenant's (NOT_FOUND)"),
          ...commonErrors,
        },
      },
    },
    "/v1/task-groups": {
      post: {
        operationId: "submitTaskGroup",
        summary: "Submit a group of tasks (fan-out)",
        description:
          "The tasks run on any worker; the group finishes when all have. `failurePolicy` says what one failed child does to the group.",
        requestBody: { required: true, content: json("SubmitTaskGroupRequest") },
        responses: {
          "202": { description: "Accepted", content: json("SubmittedTaskGroup") },
          "400": errorResponse("Invalid input (INVALID_INPUT)"),
          "413": errorResponse("Body or a prompt too large (PAYLOAD_TOO_LARGE)"),
          "429": errorResponse(
            "The tenant's submit rate limit is reached (RATE_LIMITED; each task of the group counts); wait `Retry-After` seconds",
          ),
          ...commonErrors,
        },
      },
    },
    "/v1/task-groups/{id}": {
      get: {
        operationId: "getTaskGroup",
        summary: "A group's state and, once finished, each child's result or error",
        parameters: [idParam("Group")],
        responses: {
          "200": { description: "The group", content: json("TaskGroupStatus") },
          "404": errorResponse("Unknown group (NOT_FOUND)"),
          ...commonErrors,
        },
      },
    },
    "/healthz": {
      get: {
        operationId: "health",
        summary: "Liveness and Redis reachability (no authentication)",
        security: [],
        responses: {
          "200": { description: "Healthy", content: json("Health") },
          "503": { description: "Redis does not answer", content: json("Health") },
        },
      },
    },
    "/openapi.json": {
      get: {
        operationId: "openapi",
        summary: "This document (no authentication)",
        security: [],
        responses: { "200": { description: "OpenAPI 3.1" } },
      },
    },
  };
  if (options.metrics) {
    paths["/metrics"] = {
      get: {
        operationId: "metrics",
        summary: "Prometheus metrics (no authentication)",
        security: [],
        responses: {
          "200": {
            description: "Prometheus text format",
            content: { "text/plain": { schema: { type: "string" } } },
          },
        },
      },
    };
  }
  if (options.boardPath) {
    paths[options.boardPath] = {
      get: {
        operationId: "bullBoard",
        summary: "Bull Board dashboard of Agentry's queue",
        description:
          `Open once with \`?key=<api key>\` to log a browser in: the answer is a 303 to the same page that sets the HttpOnly cookie \`${BOARD_COOKIE}\`. ` +
          "Admin keys get the full board; other keys see it read-only, limited to their tenant's jobs.",
        security: [{ bearer: [] }, { boardCookie: [] }],
        responses: {
          "200": { description: "HTML page", content: { "text/html": {} } },
          "303": { description: "Logged in" },
          "401": errorResponse("Missing or invalid key"),
        },
      },
    };
  }

  return {
    openapi: "3.1.0",
    info: {
      title: "Agentry producer API",
      version: options.version ?? "0.1.0",
      description:
        "Submit agent tasks, read their status and results, stream their events. Every /v1 route needs `Authorization: Bearer <api key>`.",
    },
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "An API key; it decides the tenant" },
        boardCookie: { type: "apiKey", in: "cookie", name: BOARD_COOKIE },
        eventsToken: {
          type: "apiKey",
          in: "query",
          name: "token",
          description: "From `POST /v1/tasks/{id}/events-token`; one task's events only",
        },
      },
    },
    security: [{ bearer: [] }],
  };
}
