import { afterEach, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { createLogger, createRedis } from "@agentry/core";
import { freePort, useTestRedis } from "@agentry/testkit";
import { AgentryClient, AgentWorker, type TaskHandler } from "@agentry/runtime";
import { buildProducerApp, type ProducerAppOptions } from "./app.js";
import type { ApiKeys } from "./auth/api-keys.js";
import { SubmitRateLimiter } from "./rate-limit/submit-rate-limiter.js";

// What an attacker holding a tenant's key (or no key) tries at the edge of the HTTP API.

const logger = createLogger({ name: "producer-hardening-test", level: "silent" });
const redis = useTestRedis("producer-hardening");
const direct = redis.client();

const KEYS: ApiKeys = new Map([
  ["key-acme", { tenant: "acme", name: "acme" }],
  ["key-globex", { tenant: "globex", name: "globex" }],
  ["key-initech", { tenant: "initech", name: "initech" }],
  ["key-ops", { tenant: "ops", name: "ops", admin: true }],
]);
const auth = (key = "key-acme") => ({ authorization: `Bearer ${key}` });

const completes: TaskHandler = async (ex) => ({
  type: "completed",
  result: {
    text: `done: ${ex.payload.prompt}`,
    steps: 1,
    usage: { input: 1, output: 1, cacheCreationInput: 0, cacheReadInput: 0 },
    costMicroUsd: 1,
    model: "scripted",
    finishedAt: Date.now(),
  },
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

interface Setup {
  app: FastifyInstance;
  client: AgentryClient;
  prefix: string;
}

async function setup(
  options: { handler?: TaskHandler; prefix?: string; app?: Partial<ProducerAppOptions> } = {},
): Promise<Setup> {
  const prefix = options.prefix ?? redis.freshPrefix();
  const client = new AgentryClient({ url: redis.url, prefix });
  closers.push(() => client.close());
  const app = await buildProducerApp({ client, apiKeys: KEYS, logger, ...options.app });
  closers.push(() => app.close());
  await app.ready();
  if (options.handler) {
    const worker = new AgentWorker({
      url: redis.url,
      prefix,
      handler: options.handler,
      logger,
      concurrency: 2,
    });
    closers.push(() => worker.close());
    await worker.start();
  }
  return { app, client, prefix };
}

function submit(app: FastifyInstance, body: unknown, headers: Record<string, string> = auth()) {
  return app.inject({
    method: "POST",
    url: "/v1/tasks",
    headers: { "content-type": "application/json", ...headers },
    payload: JSON.stringify(body),
  });
}

function submitGroup(app: FastifyInstance, tasks: unknown[], headers: Record<string, string> = auth()) {
  return app.inject({
    method: "POST",
    url: "/v1/task-groups",
    headers: { "content-type": "application/json", ...headers },
    payload: JSON.stringify({ tasks }),
  });
}

/** Every key under the prefix with its type: what a request must not change. */
/**
 * The type of every key under `prefix`, but the queue's limiter counter: the workers count job
 * starts there and it lapses on its own a second later, whatever the test does.
 */
async function keyTypes(prefix: string): Promise<Record<string, string>> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, found] = await direct.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
    cursor = next;
    keys.push(...found);
  } while (cursor !== "0");
  const types: Record<string, string> = {};
  for (const key of keys.sort()) if (key !== `${prefix}:tasks:limiter`) types[key] = await direct.type(key);
  return types;
}

describe("task and group ids are checked at the edge", () => {
  it("answers 404 for ids that name BullMQ's own keys or are not shaped like Agentry ids, and changes nothing", async () => {
    const { app, client, prefix } = await setup({ handler: completes });
    const { taskId } = (await submit(app, { prompt: "fill the completed set" })).json<{ taskId: string }>();
    const { groupId } = (await submitGroup(app, [{ prompt: "a" }])).json<{ groupId: string }>();
    await client.wait(taskId, { timeoutMs: 20_000 });
    await expect
      .poll(async () => (await client.groupResult(groupId)).state, { timeout: 20_000 })
      .toBe("completed");
    // The queue's own keys exist now, with types a job lookup would trip on.
    const before = await keyTypes(prefix);
    expect(before[`${prefix}:tasks:completed`]).toBe("zset");
    expect(before[`${prefix}:tasks:events`]).toBe("stream");
    expect(before[`${prefix}:tasks:meta`]).toBe("hash");

    const hex = taskId.slice("task_".length);
    const ids = [
      ...[
        "completed",
        "failed",
        "wait",
        "active",
        "paused",
        "delayed",
        "prioritized",
        "waiting-children",
        "id",
        "events",
        "meta",
        "marker",
        "stalled",
        "stalled-check",
        "limiter",
        "repeat",
        "de",
        "pc",
      ],
      `TASK_${hex}`,
      `task_${hex.toUpperCase()}`,
      `task_${hex}0`,
      `task_${hex.slice(1)}`,
      `${taskId}:lock`,
      `${taskId}%3Alock`,
      `${taskId}%00`,
      `%20${taskId}`,
      "..%2Fcompleted",
      groupId,
    ];
    for (const id of ids) {
      for (const [method, url] of [
        ["GET", `/v1/tasks/${id}`],
        ["DELETE", `/v1/tasks/${id}`],
        ["GET", `/v1/tasks/${id}/events`],
      ] as const) {
        const res = await app.inject({ method, url, headers: auth() });
        expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(404);
        expect(res.json(), `${method} ${url}`).toMatchObject({ error: { code: "NOT_FOUND" } });
      }
    }
    for (const id of [
      ...ids.filter((i) => i !== groupId),
      taskId,
      `GROUP_${groupId.slice("group_".length)}`,
    ]) {
      const res = await app.inject({ method: "GET", url: `/v1/task-groups/${id}`, headers: auth() });
      expect(res.statusCode, `group ${id}: ${res.body}`).toBe(404);
      expect(res.json()).toMatchObject({ error: { code: "NOT_FOUND" } });
    }
    // Bull Board's job routes, even for an admin key.
    for (const id of ["completed", "meta", "id"]) {
      for (const key of ["key-acme", "key-ops"]) {
        const res = await app.inject({
          method: "GET",
          url: `/admin/queues/api/queues/tasks/${id}`,
          headers: auth(key),
        });
        expect(res.statusCode, `board ${id} as ${key}: ${res.body}`).toBe(404);
      }
    }
    // The client library refuses them too (the CLI's `status` goes through it).
    await expect(client.status("completed")).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(client.groupResult("meta")).rejects.toMatchObject({ code: "NOT_FOUND" });

    expect(await keyTypes(prefix)).toEqual(before);
    // Real ids still answer.
    expect(
      (await app.inject({ method: "GET", url: `/v1/tasks/${taskId}`, headers: auth() })).json(),
    ).toMatchObject({ state: "completed" });
    expect(
      (await app.inject({ method: "GET", url: `/v1/task-groups/${groupId}`, headers: auth() })).json(),
    ).toMatchObject({ state: "completed" });
  }, 60_000);
});

describe("Bull Board's operator views are for admin keys only", () => {
  it("refuses Redis statistics, the worker list and schedulers to a non-admin key, and serves them to an admin key", async () => {
    const { app } = await setup({ handler: completes });
    const { taskId } = (await submit(app, { prompt: "p" })).json<{ taskId: string }>();

    for (const url of [
      "/admin/queues/api/redis/stats",
      "/admin/queues/api/queues/tasks/workers",
      "/admin/queues/api/job-schedulers",
    ]) {
      const tenant = await app.inject({ method: "GET", url, headers: auth() });
      expect(tenant.statusCode, `${url}: ${tenant.body}`).toBe(403);
      expect(tenant.body).not.toMatch(/redis_version|"version"|"addr"|127\.0\.0\.1/);
      const admin = await app.inject({ method: "GET", url, headers: auth("key-ops") });
      expect(admin.statusCode, `${url} as admin: ${admin.body}`).toBe(200);
    }
    const stats = (
      await app.inject({ method: "GET", url: "/admin/queues/api/redis/stats", headers: auth("key-ops") })
    ).json<{ version?: string }>();
    expect(stats.version).toEqual(expect.any(String));
    const workers = (
      await app.inject({
        method: "GET",
        url: "/admin/queues/api/queues/tasks/workers",
        headers: auth("key-ops"),
      })
    ).json<{ workers: { addr?: string }[] }>();
    expect(workers.workers.length).toBeGreaterThan(0);
    expect(workers.workers[0]?.addr).toEqual(expect.any(String));

    // What a tenant's read-only board needs still answers.
    expect(
      (
        await app.inject({
          method: "GET",
          url: "/admin/queues/api/queues?activeQueue=tasks&status=waiting",
          headers: auth(),
        })
      ).statusCode,
    ).toBe(200);
    expect(
      (await app.inject({ method: "GET", url: `/admin/queues/api/queues/tasks/${taskId}`, headers: auth() }))
        .statusCode,
    ).toBe(200);
    expect(
      (
        await app.inject({
          method: "GET",
          url: `/admin/queues/api/queues/tasks/${taskId}/logs`,
          headers: auth(),
        })
      ).statusCode,
    ).toBe(200);
    // Through the login cookie as well as the bearer header.
    const login = await app.inject({ method: "GET", url: "/admin/queues?key=key-acme" });
    const cookie = String(login.headers["set-cookie"]).split(";")[0] as string;
    expect(
      (await app.inject({ method: "GET", url: "/admin/queues/api/redis/stats", headers: { cookie } }))
        .statusCode,
    ).toBe(403);
  }, 30_000);
});

describe("metadata limits", () => {
  const entries = (n: number, key: (i: number) => string, value: (i: number) => string) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [key(i), value(i)]));
  type Refusal = { error: { code: string; message: string; fields: { path: string; message: string }[] } };

  it("accepts metadata at every limit, and refuses each limit crossed with 400 naming it; nothing is enqueued", async () => {
    const { app, client } = await setup();
    // 32 entries × (64-character key + 192-character value) = exactly 8 KiB.
    const atLimits = entries(
      32,
      (i) => String(i).padStart(64, "k"),
      () => "v".repeat(192),
    );
    expect((await submit(app, { prompt: "p", metadata: atLimits })).statusCode).toBe(202);
    expect((await submit(app, { prompt: "p", metadata: { k: "v".repeat(500) } })).statusCode).toBe(202);
    expect(await client.queue.count()).toBe(2);

    const cases: { name: string; metadata: Record<string, string>; path: string; message: RegExp }[] = [
      {
        name: "33 entries",
        metadata: entries(
          33,
          (i) => `k${i}`,
          () => "v",
        ),
        path: "metadata",
        message: /at most 32 entries \(got 33\)/,
      },
      {
        name: "a 65-character key",
        metadata: { ["k".repeat(65)]: "v" },
        path: `metadata.${"k".repeat(65)}`,
        message: /keys are 1 to 64 characters/,
      },
      {
        name: "an empty key",
        metadata: { "": "v" },
        path: "metadata.",
        message: /keys are 1 to 64 characters/,
      },
      {
        name: "a 501-character value",
        metadata: { note: "v".repeat(501) },
        path: "metadata.note",
        message: /values are at most 500 characters/,
      },
      // 20 × (2 + 400 two-byte characters) = 16 040 bytes, though every value is within 500 characters.
      {
        name: "more than 8 KiB in multi-byte text",
        metadata: entries(
          20,
          (i) => `k${i}`,
          () => "é".repeat(400),
        ),
        path: "metadata",
        message: /at most 8192 bytes .* \(got 16\d{3}\)/,
      },
    ];
    for (const c of cases) {
      const res = await submit(app, { prompt: "p", metadata: c.metadata });
      expect(res.statusCode, c.name).toBe(400);
      const { error } = res.json<Refusal>();
      expect(error.code).toBe("INVALID_INPUT");
      expect(error.fields, c.name).toContainEqual({
        path: c.path,
        message: expect.stringMatching(c.message) as string,
      });
    }
    const group = await submitGroup(app, [
      { prompt: "ok" },
      {
        prompt: "p",
        metadata: entries(
          40,
          (i) => `k${i}`,
          () => "v",
        ),
      },
    ]);
    expect(group.statusCode).toBe(400);
    expect(group.json<Refusal>().error.fields).toContainEqual({
      path: "tasks.1.metadata",
      message: expect.stringMatching(/at most 32 entries/) as string,
    });
    // Values of another type are refused as before.
    expect((await submit(app, { prompt: "p", metadata: { n: 1 } })).statusCode).toBe(400);
    expect(await client.queue.count()).toBe(2);
  });
});

describe("per-tenant submit rate limit", () => {
  /** A limiter on its own connection, as each producer replica has. */
  function limiter(prefix: string, perSecond: number, burst: number, url = redis.url): SubmitRateLimiter {
    const connection = createRedis({ url, role: "producer", connectionName: "rate-limit-test" });
    connection.on("error", () => undefined);
    closers.push(async () => void connection.disconnect());
    return new SubmitRateLimiter({ redis: connection, prefix, perSecond, burst });
  }
  type Limited = { error: { code: string; retryAfterMs: number } };

  it("is one bucket per tenant shared by every replica; a group takes a token per task; past it 429 with Retry-After; other tenants unaffected", async () => {
    const prefix = redis.freshPrefix();
    // One token per 1000 s: nothing refills while the test runs, so the counts are exact.
    const replicas = [
      await setup({ prefix, app: { submitRateLimiter: limiter(prefix, 0.001, 5) } }),
      await setup({ prefix, app: { submitRateLimiter: limiter(prefix, 0.001, 5) } }),
    ];
    const [a, b] = replicas.map((r) => r.app) as [FastifyInstance, FastifyInstance];
    // Refused submissions take nothing.
    for (let i = 0; i < 3; i++) expect((await submit(a, { prompt: "" })).statusCode).toBe(400);

    expect((await submit(a, { prompt: "1" })).statusCode).toBe(202);
    expect((await submit(b, { prompt: "2" })).statusCode).toBe(202);
    expect((await submitGroup(a, [{ prompt: "3" }, { prompt: "4" }])).statusCode).toBe(202);
    // One token left: a group of two is refused whole, a single task passes.
    const group = await submitGroup(b, [{ prompt: "5" }, { prompt: "6" }]);
    expect(group.statusCode).toBe(429);
    expect((await submit(b, { prompt: "5" })).statusCode).toBe(202);

    for (const app of [a, b]) {
      const res = await submit(app, { prompt: "one too many" });
      expect(res.statusCode).toBe(429);
      const { error } = res.json<Limited>();
      expect(error.code).toBe("RATE_LIMITED");
      // One token at 0.001/s: about 1000 s.
      expect(error.retryAfterMs).toBeGreaterThan(990_000);
      expect(error.retryAfterMs).toBeLessThanOrEqual(1_000_000);
      expect(res.headers["retry-after"]).toBe(String(Math.ceil(error.retryAfterMs / 1000)));
    }
    // More than the burst at once could never pass: refused as invalid, naming the limit.
    const tooBig = await submitGroup(
      a,
      Array.from({ length: 6 }, (_, i) => ({ prompt: `g${i}` })),
      auth("key-globex"),
    );
    expect(tooBig.statusCode).toBe(400);
    expect(tooBig.json()).toMatchObject({
      error: {
        code: "INVALID_INPUT",
        fields: [{ path: "tasks", message: expect.stringMatching(/at most 5 tasks/) as string }],
      },
    });

    // Another tenant's bucket is its own. Twelve at once through both replicas: exactly five pass.
    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        submit(i % 2 ? a : b, { prompt: `initech ${i}` }, auth("key-initech")),
      ),
    );
    expect(burst.filter((r) => r.statusCode === 202)).toHaveLength(5);
    expect(burst.filter((r) => r.statusCode === 429)).toHaveLength(7);

    // Accepted: acme 5 tasks (one group of 2) + initech 5; nothing else reached the queue. Fair share
    // enqueues every task with its tenant's priority, so they wait in BullMQ's prioritized set.
    const counts = await (replicas[0] as Setup).client.queue.getJobCounts(
      "waiting",
      "prioritized",
      "waiting-children",
    );
    expect(counts).toEqual({ waiting: 0, prioritized: 10, "waiting-children": 1 });
  });

  it("refills with time: after Retry-After the tenant may submit again", async () => {
    const prefix = redis.freshPrefix();
    const { app } = await setup({ prefix, app: { submitRateLimiter: limiter(prefix, 20, 1) } });
    expect((await submit(app, { prompt: "first" })).statusCode).toBe(202);
    const limited = await submit(app, { prompt: "second" });
    if (limited.statusCode === 429) {
      const { error } = limited.json<Limited>();
      // A token every 50 ms.
      expect(error.retryAfterMs).toBeGreaterThan(0);
      expect(error.retryAfterMs).toBeLessThanOrEqual(50);
      expect(limited.headers["retry-after"]).toBe("1");
    }
    await expect
      .poll(async () => (await submit(app, { prompt: "later" })).statusCode, { timeout: 5_000, interval: 60 })
      .toBe(202);
  });

  it("answers 503 REDIS_UNAVAILABLE, and enqueues nothing, when the bucket cannot be read", async () => {
    const prefix = redis.freshPrefix();
    const down = `redis://127.0.0.1:${await freePort()}`;
    const { app, client } = await setup({
      prefix,
      app: { submitRateLimiter: limiter(prefix, 10, 10, down) },
    });
    const res = await submit(app, { prompt: "p" });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ error: { code: "REDIS_UNAVAILABLE" } });
    expect(await client.queue.count()).toBe(0);
  });
});
