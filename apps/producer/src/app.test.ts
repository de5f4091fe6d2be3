import { connect, type AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { createLogger, sleep } from "@agentry/core";
import { freePort, useTestRedis } from "@agentry/testkit";
import {
  AgentryClient,
  AgentWorker,
  MAX_PROMPT_CHARS,
  type AgentTaskResult,
  type TaskHandler,
} from "@agentry/runtime";
import { buildProducerApp } from "./app.js";
import type { ApiKeys } from "./auth/api-keys.js";
import { readEventStream, type SseMessage } from "./testing/sse.js";

const logger = createLogger({ name: "producer-test", level: "silent" });
const redis = useTestRedis("producer");

const KEYS: ApiKeys = new Map([
  ["key-acme", { tenant: "acme", name: "acme" }],
  ["key-globex", { tenant: "globex", name: "globex" }],
  ["key-ops", { tenant: "ops", name: "ops", admin: true }],
]);
const auth = (key = "key-acme") => ({ authorization: `Bearer ${key}` });

const result = (text: string): AgentTaskResult => ({
  text,
  steps: 1,
  usage: { input: 1, output: 1, cacheCreationInput: 0, cacheReadInput: 0 },
  costMicroUsd: 1,
  model: "scripted",
  finishedAt: Date.now(),
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

interface Setup {
  app: FastifyInstance;
  client: AgentryClient;
  streams: Set<AbortController>;
  /** Base URL of the listening app. */
  url: string;
}

async function setup(
  options: { handler?: TaskHandler; redisUrl?: string; bodyLimitBytes?: number; heartbeatMs?: number } = {},
): Promise<Setup> {
  const prefix = redis.freshPrefix();
  const client = new AgentryClient({ url: options.redisUrl ?? redis.url, prefix });
  closers.push(() => client.close());
  const streams = new Set<AbortController>();
  const app = await buildProducerApp({
    client,
    apiKeys: KEYS,
    logger,
    ...(options.bodyLimitBytes ? { bodyLimitBytes: options.bodyLimitBytes } : {}),
    ...(options.heartbeatMs ? { eventsHeartbeatMs: options.heartbeatMs } : {}),
    _internal: { streams },
  });
  closers.push(() => app.close());
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as AddressInfo;
  if (options.handler) {
    const worker = new AgentWorker({
      url: redis.url,
      prefix,
      handler: options.handler,
      logger,
      concurrency: 4,
    });
    closers.push(() => worker.close());
    await worker.start();
  }
  return { app, client, streams, url: `http://127.0.0.1:${port}` };
}

function submit(app: FastifyInstance, body: unknown, headers: Record<string, string> = auth()) {
  return app.inject({
    method: "POST",
    url: "/v1/tasks",
    headers: { "content-type": "application/json", ...headers },
    payload: JSON.stringify(body),
  });
}

describe("POST /v1/tasks → GET /v1/tasks/:id → events", () => {
  it("accepts a task, reports its status and streams progress and completion over SSE", async () => {
    let progressSeen = false;
    let released: () => void = () => undefined;
    const release = new Promise<void>((resolve) => (released = resolve));
    const { app, url } = await setup({
      heartbeatMs: 25,
      handler: async (ex) => {
        // Report until the stream has shown one, so the test does not depend on when the stream subscribed.
        for (let step = 1; !progressSeen; step++) {
          await ex.reportProgress({ step, phase: "model" });
          await sleep(20);
        }
        await release;
        return { type: "completed", result: result(`echo: ${ex.payload.prompt}`) };
      },
    });

    const accepted = await submit(app, { prompt: "hello", sessionId: "s-1", metadata: { source: "test" } });
    expect(accepted.statusCode).toBe(202);
    const body = accepted.json<{
      taskId: string;
      sessionId: string;
      deduplicated: boolean;
      statusUrl: string;
      eventsUrl: string;
    }>();
    expect(body).toMatchObject({ sessionId: "s-1", deduplicated: false });
    expect(body.statusUrl).toBe(`/v1/tasks/${body.taskId}`);
    expect(accepted.headers.location).toBe(body.statusUrl);

    const status = await fetch(`${url}${body.statusUrl}`, { headers: auth() });
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({
      taskId: body.taskId,
      tenant: "acme",
      sessionId: "s-1",
      prompt: "hello",
    });

    const response = await fetch(`${url}${body.eventsUrl}`, { headers: auth() });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    let heartbeats = 0;
    const messages = await readEventStream(response, (m) => {
      if (m.kind === "comment" && m.text === "heartbeat") heartbeats++;
      if (m.kind === "event" && m.event === "progress") progressSeen = true;
      if (progressSeen && heartbeats > 0) released();
    });
    const events = messages.filter((m): m is Extract<SseMessage, { kind: "event" }> => m.kind === "event");
    expect(events[0]).toMatchObject({
      event: "status",
      data: { type: "status", taskId: body.taskId, status: { tenant: "acme" } },
    });
    expect(
      events.some(
        (e) =>
          e.event === "progress" && (e.data as { progress: { phase: string } }).progress.phase === "model",
      ),
    ).toBe(true);
    expect(events.at(-1)).toMatchObject({
      event: "completed",
      data: { type: "completed", taskId: body.taskId, result: { text: "echo: hello" } },
    });
    expect(heartbeats).toBeGreaterThan(0);

    const done = await app.inject({ method: "GET", url: body.statusUrl, headers: auth() });
    expect(done.json()).toMatchObject({ state: "completed", result: { text: "echo: hello" } });
  });

  it("streams a failed task's typed error and ends the stream", async () => {
    const { app, url } = await setup({
      handler: async () => {
        const { AgentryError } = await import("@agentry/core");
        throw new AgentryError("POLICY_DENIED", "no-prod-delete");
      },
    });
    const { taskId } = (await submit(app, { prompt: "delete prod" })).json<{ taskId: string }>();
    const messages = await readEventStream(
      await fetch(`${url}/v1/tasks/${taskId}/events`, { headers: auth() }),
    );
    expect(messages.filter((m) => m.kind === "event").at(-1)).toMatchObject({
      event: "failed",
      data: { error: { code: "POLICY_DENIED" } },
    });
  });

  it("stops watching when the client disconnects, and ends open streams when the app closes", async () => {
    const { app, url, streams } = await setup();
    const { taskId } = (await submit(app, { prompt: "never runs" })).json<{ taskId: string }>();

    const controller = new AbortController();
    const response = await fetch(`${url}/v1/tasks/${taskId}/events`, {
      headers: auth(),
      signal: controller.signal,
    });
    await readEventStream(response, (m) => {
      if (m.kind === "event" && m.event === "status") controller.abort();
    });
    await expect.poll(() => streams.size, { timeout: 5_000 }).toBe(0);

    const second = await fetch(`${url}/v1/tasks/${taskId}/events`, { headers: auth() });
    const reading = readEventStream(second);
    await expect.poll(() => streams.size, { timeout: 5_000 }).toBe(1);
    await app.close();
    const messages = await reading;
    expect(messages.filter((m) => m.kind === "event").map((m) => (m as { event: string }).event)).toEqual([
      "status",
    ]);
  });
});

describe("idempotency", () => {
  it("maps an Idempotency-Key header to one task, and the header wins over the body", async () => {
    const { app, client } = await setup();
    const first = (await submit(app, { prompt: "p" }, { ...auth(), "idempotency-key": "order-42" })).json<{
      taskId: string;
      deduplicated: boolean;
    }>();
    const again = await submit(app, { prompt: "p" }, { ...auth(), "idempotency-key": "order-42" });
    expect(again.statusCode).toBe(202);
    expect(again.json()).toMatchObject({ taskId: first.taskId, deduplicated: true });
    const both = await submit(
      app,
      { prompt: "p", idempotencyKey: "from-body" },
      { ...auth(), "idempotency-key": "order-42" },
    );
    expect(both.json()).toMatchObject({ taskId: first.taskId, deduplicated: true });
    // The same key under another tenant is another task.
    const other = (
      await submit(app, { prompt: "p" }, { ...auth("key-globex"), "idempotency-key": "order-42" })
    ).json<{ taskId: string }>();
    expect(other.taskId).not.toBe(first.taskId);
    expect(await client.queue.count()).toBe(2);
  });
});

describe("refusals", () => {
  it("answers 400 listing every invalid field, rejects a tenant in the body, and enqueues nothing", async () => {
    const { app, client } = await setup();
    const res = await submit(app, {
      prompt: "",
      sessionId: "bad id!",
      maxSteps: 0,
      tenant: "evil",
      extra: 1,
    });
    expect(res.statusCode).toBe(400);
    const { error } = res.json<{ error: { code: string; fields: { path: string; message: string }[] } }>();
    expect(error.code).toBe("INVALID_INPUT");
    expect(error.fields.map((f) => f.path).sort()).toEqual([
      "extra",
      "maxSteps",
      "prompt",
      "sessionId",
      "tenant",
    ]);
    expect(error.fields.find((f) => f.path === "tenant")?.message).toMatch(/API key/);

    const notJson = await app.inject({
      method: "POST",
      url: "/v1/tasks",
      headers: { ...auth(), "content-type": "application/json" },
      payload: "{prompt:",
    });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json()).toMatchObject({ error: { code: "INVALID_INPUT", fields: [{ path: "(body)" }] } });
    const text = await app.inject({
      method: "POST",
      url: "/v1/tasks",
      headers: { ...auth(), "content-type": "text/plain" },
      payload: "hello",
    });
    expect(text.statusCode).toBe(400);
    expect(text.json()).toMatchObject({ error: { code: "INVALID_INPUT", fields: [{ path: "(root)" }] } });
    const xml = await app.inject({
      method: "POST",
      url: "/v1/tasks",
      headers: { ...auth(), "content-type": "application/xml" },
      payload: "<task/>",
    });
    expect(xml.statusCode).toBe(400);
    expect(xml.json()).toMatchObject({ error: { code: "INVALID_INPUT" } });
    const empty = await app.inject({ method: "POST", url: "/v1/tasks", headers: auth() });
    expect(empty.statusCode).toBe(400);
    expect(await client.queue.count()).toBe(0);
  });

  it("answers 413 for a body over the limit and for a prompt over the runtime's limit", async () => {
    const small = await setup({ bodyLimitBytes: 2_048 });
    const big = await submit(small.app, { prompt: "x".repeat(4_000) });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ error: { code: "PAYLOAD_TOO_LARGE" } });

    const { app, client } = await setup();
    const long = await submit(app, { prompt: "x".repeat(MAX_PROMPT_CHARS + 1) });
    expect(long.statusCode).toBe(413);
    expect(long.json()).toMatchObject({ error: { code: "PAYLOAD_TOO_LARGE" } });
    const group = await app.inject({
      method: "POST",
      url: "/v1/task-groups",
      headers: auth(),
      payload: { tasks: [{ prompt: "ok" }, { prompt: "x".repeat(MAX_PROMPT_CHARS + 1) }] },
    });
    expect(group.statusCode).toBe(413);
    expect(await small.client.queue.count()).toBe(0);
    expect(await client.queue.count()).toBe(0);
  });

  it("answers 401 without a key, with an unknown key and with another scheme", async () => {
    const { app } = await setup();
    for (const headers of [{}, auth("nope"), { authorization: "Basic a2V5LWFjbWU6" }]) {
      const res = await submit(app, { prompt: "p" }, headers);
      expect(res.statusCode).toBe(401);
      expect(res.headers["www-authenticate"]).toMatch(/^Bearer/);
      expect(res.json()).toMatchObject({ error: { code: "UNAUTHORIZED" } });
    }
    expect((await app.inject({ method: "GET", url: "/v1/tasks/task_x", headers: {} })).statusCode).toBe(401);
    expect((await app.inject({ method: "GET", url: "/v1/tasks/task_x/events" })).statusCode).toBe(401);
  });

  it("keeps tenants apart: another tenant's task is not found, not cancellable, not streamable", async () => {
    const { app } = await setup();
    const { taskId } = (await submit(app, { prompt: "acme's secret" })).json<{ taskId: string }>();
    for (const [method, url] of [
      ["GET", `/v1/tasks/${taskId}`],
      ["DELETE", `/v1/tasks/${taskId}`],
      ["GET", `/v1/tasks/${taskId}/events`],
    ] as const) {
      const res = await app.inject({ method, url, headers: auth("key-globex") });
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ error: { code: "NOT_FOUND" } });
    }
    const own = await app.inject({ method: "GET", url: `/v1/tasks/${taskId}`, headers: auth() });
    expect(own.json()).toMatchObject({ state: "queued", tenant: "acme" });
  });

  it("answers a flood of 200 invalid submissions with 4xx, enqueues nothing, and keeps serving", async () => {
    const { client, url } = await setup();
    const post = (body: string, headers: Record<string, string>) =>
      fetch(`${url}/v1/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
      });
    const bad = [
      () => post(JSON.stringify({ prompt: "" }), auth()),
      () => post(JSON.stringify({ prompt: "p", tenant: "other" }), auth()),
      () => post("{not json", auth()),
      () => post(JSON.stringify({ prompt: "x".repeat(MAX_PROMPT_CHARS + 1) }), auth()),
      () => post(JSON.stringify({ prompt: "p" }), auth("stolen")),
      () => post(JSON.stringify([{ prompt: "p" }]), auth()),
      () => post(JSON.stringify({ prompt: "p", maxTokens: 10_000_000 }), auth()),
      () => post(JSON.stringify({ prompt: "p" }), {}),
    ];
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (bad[i % bad.length] as () => Promise<Response>)()),
    );
    const statuses = await Promise.all(responses.map(async (r) => (await r.text(), r.status)));
    expect(statuses.every((s) => s >= 400 && s < 500)).toBe(true);
    expect(new Set(statuses)).toEqual(new Set([400, 401, 413]));
    expect(await client.queue.count()).toBe(0);

    const ok = await post(JSON.stringify({ prompt: "still here" }), auth());
    expect(ok.status).toBe(202);
    expect(await client.queue.count()).toBe(1);
  });

  it("answers a body over the limit with 413 after reading it, on a connection that stays open", async () => {
    const limit = 64 * 1024;
    const { client, url } = await setup({ bodyLimitBytes: limit });
    const body = JSON.stringify({ prompt: "p", metadata: { a: "y".repeat(4 * limit) } });
    // Many senders at once, each still writing when the server knows the body is too large: each
    // gets the 413 (not a reset), and nothing is enqueued.
    const answers = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const res = await fetch(`${url}/v1/tasks`, {
          method: "POST",
          headers: { "content-type": "application/json", ...auth() },
          body,
        });
        return { status: res.status, connection: res.headers.get("connection"), body: await res.json() };
      }),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(413);
      expect(answer.connection).not.toBe("close");
      expect(answer.body).toMatchObject({ error: { code: "PAYLOAD_TOO_LARGE" } });
    }
    expect(await client.queue.count()).toBe(0);
  });

  it("closes the connection instead of reading a declared body many times over the limit", async () => {
    const limit = 1024;
    const { url } = await setup({ bodyLimitBytes: limit });
    const { hostname, port } = new URL(url);
    // Declares 1 MB and sends only the headers: the server answers at once and closes, without
    // waiting for (or reading) a megabyte it will refuse anyway.
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => {
        socket.write(
          `POST /v1/tasks HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\n` +
            `authorization: Bearer key-acme\r\ncontent-length: ${1024 * 1024}\r\n\r\n`,
        );
      });
      let text = "";
      socket.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
      socket.on("close", () => resolve(text));
      socket.on("error", reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 413 /);
    expect(reply.toLowerCase()).toContain("connection: close");
    expect(reply).toContain("PAYLOAD_TOO_LARGE");
  });

  it("answers 503 REDIS_UNAVAILABLE when Redis does not answer, and /healthz says so", async () => {
    const port = await freePort();
    const { app } = await setup({ redisUrl: `redis://127.0.0.1:${port}` });
    const res = await submit(app, { prompt: "p" });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ error: { code: "REDIS_UNAVAILABLE" } });
    expect(res.headers["retry-after"]).toBeDefined();
    expect(
      (await app.inject({ method: "GET", url: `/v1/tasks/task_${"0".repeat(32)}`, headers: auth() }))
        .statusCode,
    ).toBe(503);
    const health = await app.inject({ method: "GET", url: "/healthz" });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toEqual({ ok: false, redis: false });
  });

  it("answers unknown routes with a 404 error body", async () => {
    const { app } = await setup();
    const res = await app.inject({ method: "GET", url: "/v2/nothing" });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ error: { code: "NOT_FOUND" } });
  });
});

describe("cancel and groups", () => {
  it("cancels a queued task", async () => {
    const { app } = await setup();
    const { taskId } = (await submit(app, { prompt: "p" })).json<{ taskId: string }>();
    const res = await app.inject({ method: "DELETE", url: `/v1/tasks/${taskId}`, headers: auth() });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ taskId, cancelled: true, state: "queued" });
    expect(
      (await app.inject({ method: "GET", url: `/v1/tasks/${taskId}`, headers: auth() })).statusCode,
    ).toBe(404);
  });

  it("fans a group out, reports each child's result, and hides the group from other tenants", async () => {
    const { app } = await setup({
      handler: async (ex) => ({ type: "completed", result: result(`done: ${ex.payload.prompt}`) }),
    });
    const res = await app.inject({
      method: "POST",
      url: "/v1/task-groups",
      headers: auth(),
      payload: { tasks: [{ prompt: "a" }, { prompt: "b" }], failurePolicy: "all-settled" },
    });
    expect(res.statusCode).toBe(202);
    const { groupId, taskIds, statusUrl } = res.json<{
      groupId: string;
      taskIds: string[];
      statusUrl: string;
    }>();
    expect(taskIds).toHaveLength(2);
    await expect
      .poll(
        async () =>
          (await app.inject({ method: "GET", url: statusUrl, headers: auth() })).json<{ state: string }>()
            .state,
        { timeout: 15_000 },
      )
      .toBe("completed");
    const group = (await app.inject({ method: "GET", url: statusUrl, headers: auth() })).json<{
      result: { children: { taskId: string; status: string }[] };
    }>();
    // Sorted: the runtime's group result does not (yet) keep submit order.
    expect(group.result.children.map((c) => c.taskId).sort()).toEqual([...taskIds].sort());
    expect(group.result.children.every((c) => c.status === "completed")).toBe(true);
    expect(
      (await app.inject({ method: "GET", url: `/v1/task-groups/${groupId}`, headers: auth("key-globex") }))
        .statusCode,
    ).toBe(404);
    // A task id is not a group id.
    expect(
      (await app.inject({ method: "GET", url: `/v1/task-groups/${taskIds[0]}`, headers: auth() })).statusCode,
    ).toBe(404);
    const keyed = await app.inject({
      method: "POST",
      url: "/v1/task-groups",
      headers: auth(),
      payload: { tasks: [{ prompt: "a", idempotencyKey: "k" }] },
    });
    expect(keyed.json()).toMatchObject({
      error: { code: "INVALID_INPUT", fields: [{ path: "tasks.0.idempotencyKey" }] },
    });
  });
});

describe("OpenAPI, health, Bull Board", () => {
  it("describes every route with schemas generated from zod", async () => {
    const { app } = await setup();
    const res = await app.inject({ method: "GET", url: "/openapi.json" });
    expect(res.statusCode).toBe(200);
    const doc = res.json<{
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
      components: {
        schemas: Record<
          string,
          { properties?: Record<string, unknown>; additionalProperties?: unknown; required?: string[] }
        >;
      };
    }>();
    expect(doc.openapi).toBe("3.1.0");
    const operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(operations).toEqual(
      expect.arrayContaining([
        "POST /v1/tasks",
        "GET /v1/tasks/{id}",
        "DELETE /v1/tasks/{id}",
        "GET /v1/tasks/{id}/events",
        "POST /v1/task-groups",
        "GET /v1/task-groups/{id}",
        "GET /healthz",
        "GET /openapi.json",
        "GET /admin/queues",
      ]),
    );
    const submitSchema = doc.components.schemas["SubmitTaskRequest"];
    expect(submitSchema?.required).toEqual(["prompt"]);
    expect(Object.keys(submitSchema?.properties ?? {})).toEqual(
      expect.arrayContaining(["prompt", "sessionId", "idempotencyKey", "maxSteps"]),
    );
    expect(submitSchema?.properties).not.toHaveProperty("tenant");
    expect(submitSchema?.additionalProperties).toBe(false);
    for (const id of [
      "SubmittedTask",
      "TaskStatus",
      "Error",
      "TaskEvent",
      "SubmitTaskGroupRequest",
      "TaskGroupStatus",
    ]) {
      expect(doc.components.schemas).toHaveProperty(id);
    }
    // Every $ref points at a component that exists.
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map(
      (m) => m[1] as string,
    );
    expect(refs.length).toBeGreaterThan(0);
    for (const id of refs) expect(doc.components.schemas).toHaveProperty(id);
    expect((await app.inject({ method: "GET", url: "/healthz" })).json()).toEqual({ ok: true, redis: true });
  });

  it("serves Bull Board behind the API keys, logs a browser in with ?key=, and keeps non-admin keys read-only and to their tenant", async () => {
    const { app, client } = await setup();
    const { taskId: acmeTask } = (await submit(app, { prompt: "acme" })).json<{ taskId: string }>();
    const { taskId: globexTask } = (await submit(app, { prompt: "globex" }, auth("key-globex"))).json<{
      taskId: string;
    }>();

    expect((await app.inject({ method: "GET", url: "/admin/queues" })).statusCode).toBe(401);
    expect(
      (await app.inject({ method: "GET", url: "/admin/queues", headers: auth("nope") })).statusCode,
    ).toBe(401);
    const page = await app.inject({ method: "GET", url: "/admin/queues", headers: auth() });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/text\/html/);

    const login = await app.inject({ method: "GET", url: "/admin/queues?key=key-acme" });
    expect(login.statusCode).toBe(303);
    expect(login.headers.location).toBe("/admin/queues");
    const cookie = String(login.headers["set-cookie"]);
    expect(cookie).toMatch(/HttpOnly/);
    const viaCookie = await app.inject({
      method: "GET",
      url: "/admin/queues",
      headers: { cookie: cookie.split(";")[0] as string },
    });
    expect(viaCookie.statusCode).toBe(200);
    expect((await app.inject({ method: "GET", url: "/admin/queues?key=wrong" })).statusCode).toBe(401);

    const list = await app.inject({
      method: "GET",
      url: "/admin/queues/api/queues?activeQueue=tasks&status=prioritized",
      headers: auth(),
    });
    expect(list.statusCode).toBe(200);
    const queues = list.json<{ queues: { name: string; readOnlyMode: boolean; jobs: { id: string }[] }[] }>()
      .queues;
    expect(queues.map((q) => q.name)).toEqual(["tasks"]);
    expect(queues[0]?.readOnlyMode).toBe(true);
    expect(queues[0]?.jobs.map((j) => j.id)).toEqual([acmeTask]);
    expect(
      (
        await app.inject({
          method: "GET",
          url: `/admin/queues/api/queues/tasks/${globexTask}`,
          headers: auth(),
        })
      ).statusCode,
    ).toBe(404);
    expect(
      (
        await app.inject({
          method: "GET",
          url: `/admin/queues/api/queues/tasks/${acmeTask}`,
          headers: auth(),
        })
      ).statusCode,
    ).toBe(200);
    const pause = await app.inject({
      method: "PUT",
      url: "/admin/queues/api/queues/tasks/pause",
      headers: auth(),
    });
    expect(pause.statusCode).toBe(403);
    expect(await client.queue.isPaused()).toBe(false);

    const admin = await app.inject({
      method: "GET",
      url: "/admin/queues/api/queues?activeQueue=tasks&status=prioritized",
      headers: auth("key-ops"),
    });
    const adminQueue = admin.json<{ queues: { readOnlyMode: boolean; jobs: { id: string }[] }[] }>()
      .queues[0];
    expect(adminQueue?.readOnlyMode).toBe(false);
    expect(adminQueue?.jobs.map((j) => j.id).sort()).toEqual([acmeTask, globexTask].sort());
    expect(
      (
        await app.inject({
          method: "PUT",
          url: "/admin/queues/api/queues/tasks/pause",
          headers: auth("key-ops"),
        })
      ).statusCode,
    ).toBe(200);
    expect(await client.queue.isPaused()).toBe(true);
  });
});
