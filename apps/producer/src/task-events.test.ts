// The event stream under the real `eventsource` client: ids, resume, retry, the end and 204,
// browser tokens. Real fastify on a real port, real Redis, a real AgentWorker.
import type { AddressInfo } from "node:net";
import { EventSource, type FetchLike } from "eventsource";
import { afterEach, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { AgentryError, createLogger } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import {
  AgentryClient,
  AgentWorker,
  StreamedText,
  type AgentTaskResult,
  type TaskHandler,
} from "@agentry/runtime";
import { buildProducerApp } from "./app.js";
import type { ApiKeys } from "./auth/api-keys.js";
import { EventsTokens } from "./auth/events-token.js";
import { compareStreamIds, parseStreamId } from "./events/task-event-log.js";

const logger = createLogger({ name: "task-events-test", level: "silent" });
const redis = useTestRedis("producer-sse");
const SECRET = "a-test-secret-of-at-least-thirty-two-characters";
const RETRY_MS = 50;

const KEYS: ApiKeys = new Map([
  ["key-acme", { tenant: "acme", name: "acme" }],
  ["key-globex", { tenant: "globex", name: "globex" }],
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

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

interface Setup {
  app: FastifyInstance;
  client: AgentryClient;
  streams: Set<AbortController>;
  url: string;
  /** Every request the server received for an events URL, with its Last-Event-ID. */
  connections: { url: string; lastEventId: string | undefined }[];
}

async function setup(handler: TaskHandler): Promise<Setup> {
  const prefix = redis.freshPrefix();
  const client = new AgentryClient({ url: redis.url, prefix });
  closers.push(() => client.close());
  const streams = new Set<AbortController>();
  const app = await buildProducerApp({
    client,
    apiKeys: KEYS,
    logger,
    eventsRetryMs: RETRY_MS,
    eventsTokens: { secret: SECRET },
    bullBoard: false,
    _internal: { streams },
  });
  closers.push(() => app.close());
  const connections: Setup["connections"] = [];
  app.server.on("request", (req: { url?: string; headers: Record<string, unknown> }) => {
    if (req.url?.includes("/events") && !req.url.includes("/events-token")) {
      connections.push({ url: req.url, lastEventId: req.headers["last-event-id"] as string | undefined });
    }
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const worker = new AgentWorker({ url: redis.url, prefix, handler, logger, concurrency: 2 });
  closers.push(() => worker.close());
  await worker.start();
  const { port } = app.server.address() as AddressInfo;
  return { app, client, streams, connections, url: `http://127.0.0.1:${port}` };
}

async function submit(app: FastifyInstance, prompt: string, key = "key-acme"): Promise<string> {
  const res = await app.inject({
    method: "POST",
    url: "/v1/tasks",
    headers: { "content-type": "application/json", ...auth(key) },
    payload: JSON.stringify({ prompt }),
  });
  expect(res.statusCode).toBe(202);
  return res.json<{ taskId: string }>().taskId;
}

interface Received {
  event: string;
  id: string;
  data: {
    type: string;
    progress?: { step: number };
    error?: { code: string };
    result?: AgentTaskResult;
    step?: number;
    offset?: number;
    text?: string;
  };
}

/** An EventSource that records every event it receives (named or not) and every error. */
function open(
  url: string,
  fetchImpl?: FetchLike,
): { es: EventSource; received: Received[]; errors: number[] } {
  const es = new EventSource(url, fetchImpl ? { fetch: fetchImpl } : {});
  closers.push(() => es.close());
  const received: Received[] = [];
  const errors: number[] = [];
  for (const name of ["status", "progress", "delta", "completed", "failed", "message"]) {
    es.addEventListener(name, (e: { data: string; lastEventId: string }) =>
      received.push({ event: name, id: e.lastEventId, data: JSON.parse(e.data) as Received["data"] }),
    );
  }
  es.addEventListener("error", (e) => errors.push((e as { code?: number }).code ?? 0));
  return { es, received, errors };
}

/** Resolvable gates for a handler the test steps through. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/** The text of the delta events received, concatenated as they came. */
const textOf = (received: Received[]) =>
  received
    .filter((e) => e.event === "delta")
    .map((e) => e.data.text ?? "")
    .join("");

const strictlyIncreasing = (ids: string[]) =>
  ids.every((id, i) => {
    const cur = parseStreamId(id);
    const prev = i === 0 ? undefined : parseStreamId(ids[i - 1]);
    return cur !== undefined && (prev === undefined || compareStreamIds(prev, cur) < 0);
  });

describe("GET /v1/tasks/:id/events under a standard EventSource", () => {
  it("resumes after a dropped connection with no repeat and no gap, ends with the final event, then 204 stops the client", async () => {
    const subscribed = gate();
    const afterStep1 = gate();
    const afterStep3 = gate();
    const { app, url, streams, client, connections } = await setup(async (ex) => {
      await subscribed.wait;
      await ex.reportProgress({ step: 1, phase: "model" });
      await afterStep1.wait;
      await ex.reportProgress({ step: 2, phase: "tool", tool: "search" });
      await ex.reportProgress({ step: 3, phase: "model" });
      await afterStep3.wait;
      await ex.reportProgress({ step: 4, phase: "done" });
      return { type: "completed", result: result(`echo: ${ex.payload.prompt}`) };
    });
    closers.push(() => [subscribed, afterStep1, afterStep3].forEach((g) => g.open()));
    const taskId = await submit(app, "hello");

    // Step: connect; reconnects wait until the test lets them through.
    const reconnect = gate();
    let fetches = 0;
    const { es, received } = open(`${url}/v1/tasks/${taskId}/events`, async (input, init) => {
      if (++fetches > 1) await reconnect.wait;
      return fetch(input, { ...init, headers: { ...init.headers, ...auth() } });
    });
    await expect.poll(() => received[0]?.event, { timeout: 10_000 }).toBe("status");
    subscribed.open();
    await expect
      .poll(() => received.some((e) => e.data.progress?.step === 1), { timeout: 10_000 })
      .toBe(true);

    // Step: the server drops the stream; the task moves on while the client is away.
    for (const stream of streams) stream.abort();
    await expect.poll(() => es.readyState, { timeout: 10_000 }).toBe(EventSource.CONNECTING);
    afterStep1.open();
    await expect.poll(async () => (await client.status(taskId)).progress?.step, { timeout: 10_000 }).toBe(3);
    reconnect.open();

    // Step: the reconnect replays steps 2 and 3, then streams live to the end.
    await expect
      .poll(() => received.some((e) => e.data.progress?.step === 3), { timeout: 10_000 })
      .toBe(true);
    afterStep3.open();
    await expect.poll(() => es.readyState, { timeout: 10_000 }).toBe(EventSource.CLOSED);

    expect(received.map((e) => e.event)).toEqual([
      "status",
      "progress",
      "progress",
      "progress",
      "progress",
      "completed",
    ]);
    expect(received.filter((e) => e.event === "progress").map((e) => e.data.progress?.step)).toEqual([
      1, 2, 3, 4,
    ]);
    expect(strictlyIncreasing(received.map((e) => e.id))).toBe(true);
    // Three connections: the first, the resume (after step 1), the one after the end that got 204.
    expect(connections.map((c) => c.lastEventId)).toEqual([undefined, received[1]?.id, received.at(-1)?.id]);
    const final = await fetch(`${url}/v1/tasks/${taskId}/events`, {
      headers: { ...auth(), "last-event-id": received.at(-1)?.id ?? "" },
    });
    expect(final.status).toBe(204);
  });

  it("a failed task's stream is one `failed` event (never `error`), the same on every reconnect, then 204", async () => {
    const { app, url, connections } = await setup(async () => {
      throw new AgentryError("POLICY_DENIED", "no-prod-delete");
    });
    const taskId = await submit(app, "delete prod");
    await expect
      .poll(
        async () =>
          (await app.inject({ method: "GET", url: `/v1/tasks/${taskId}`, headers: auth() })).json<{
            state: string;
          }>().state,
        { timeout: 10_000 },
      )
      .toBe("failed");

    const first = await fetch(`${url}/v1/tasks/${taskId}/events`, { headers: auth() });
    const text = await first.text();
    expect(text).toMatch(new RegExp(`^retry: ${RETRY_MS}\\n\\n`));
    expect(text).not.toMatch(/^event: error$/m);
    const minted = await app.inject({
      method: "POST",
      url: `/v1/tasks/${taskId}/events-token`,
      headers: auth(),
    });
    expect(minted.statusCode).toBe(200);
    const { eventsUrl } = minted.json<{ eventsUrl: string }>();

    // A browser: no headers, the token in the URL.
    const { es, received, errors } = open(`${url}${eventsUrl}`);
    await expect.poll(() => es.readyState, { timeout: 10_000 }).toBe(EventSource.CLOSED);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      event: "failed",
      data: { type: "failed", error: { code: "POLICY_DENIED" } },
    });
    expect(text).toContain(`id: ${received[0]?.id}\nevent: failed\n`);
    expect(errors.at(-1)).toBe(204);
    const browser = connections.filter((c) => c.url.includes("token="));
    expect(browser.map((c) => c.lastEventId)).toEqual([undefined, received[0]?.id]);
  });

  it("accepts an events token only for its own task, its tenant, unexpired, untampered, and only on the events route", async () => {
    const release = gate();
    const { app, url } = await setup(async () => {
      await release.wait;
      return { type: "completed", result: result("done") };
    });
    closers.push(() => release.open());
    const mine = await submit(app, "one");
    const other = await submit(app, "two");
    const theirs = await submit(app, "three", "key-globex");
    const tokenFor = async (taskId: string, key = "key-acme") =>
      app.inject({ method: "POST", url: `/v1/tasks/${taskId}/events-token`, headers: auth(key) });
    const status = async (taskId: string, token: string, path = "/events") =>
      (
        await fetch(`${url}/v1/tasks/${taskId}${path}?token=${encodeURIComponent(token)}`, {
          signal: AbortSignal.timeout(10_000),
        })
      ).status;

    expect((await tokenFor(theirs)).statusCode).toBe(404);
    expect((await tokenFor(mine, "no-such-key")).statusCode).toBe(401);
    const { token, expiresAt } = (await tokenFor(mine)).json<{ token: string; expiresAt: string }>();
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());

    // Valid: the stream opens (a `status` event while the task waits), then the client leaves.
    const { es, received } = open(`${url}/v1/tasks/${mine}/events?token=${encodeURIComponent(token)}`);
    await expect.poll(() => received[0]?.event, { timeout: 10_000 }).toBe("status");
    es.close();

    expect(await status(other, token)).toBe(404);
    expect(await status(mine, token, "")).toBe(401);
    const signedBySameSecret = new EventsTokens({ secret: SECRET });
    expect(await status(theirs, signedBySameSecret.mint("acme", theirs).token)).toBe(404);
    const expired = new EventsTokens({
      secret: SECRET,
      ttlMs: 1_000,
      _internal: { now: () => Date.now() - 60_000 },
    }).mint("acme", mine).token;
    expect(await status(mine, expired)).toBe(401);
    expect(
      await status(
        mine,
        new EventsTokens({ secret: "another-secret-of-at-least-thirty-two-chars" }).mint("acme", mine).token,
      ),
    ).toBe(401);
    const [v, claims, signature] = token.split(".");
    const forged = `${v}.${Buffer.from(JSON.stringify({ t: "globex", k: theirs, e: Date.parse(expiresAt) })).toString("base64url")}.${signature}`;
    expect(claims).toBeDefined();
    expect(await status(theirs, forged)).toBe(401);
    expect(await status(mine, "garbage")).toBe(401);

    // An expired token under EventSource: refused, and the client does not retry.
    const refused = open(`${url}/v1/tasks/${mine}/events?token=${encodeURIComponent(expired)}`);
    await expect.poll(() => refused.es.readyState, { timeout: 10_000 }).toBe(EventSource.CLOSED);
    expect(refused.errors).toEqual([401]);
  });

  it("starts afresh when Last-Event-ID is malformed or was never issued", async () => {
    const release = gate();
    const { app, url } = await setup(async () => {
      await release.wait;
      return { type: "completed", result: result("done") };
    });
    closers.push(() => release.open());
    const taskId = await submit(app, "wait");
    for (const lastEventId of ["not-an-id", "99999999999999-0", "1-99999999999999999999999"]) {
      const controller = new AbortController();
      const res = await fetch(`${url}/v1/tasks/${taskId}/events`, {
        headers: { ...auth(), "last-event-id": lastEventId },
        signal: controller.signal,
      });
      expect(res.status).toBe(200);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      let text = "";
      while (!text.includes("event: status")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      controller.abort();
      expect(text).toContain("event: status");
    }
  });

  it("streams the model's text as delta events while the task runs; the pieces rebuild the answer", async () => {
    const pieces = ["The ", "answer ", "is ", "forty-", "two."];
    let seen: Received[] = [];
    const { app, url } = await setup(async (ex) => {
      await ex.reportProgress({ step: 1, phase: "model" });
      let offset = 0;
      for (const [i, text] of pieces.entries()) {
        ex.publishText({ step: 1, offset, text });
        offset += text.length;
        // The next piece is generated only once this one reached the client: live, not replayed at the end.
        await expect.poll(() => textOf(seen), { timeout: 10_000 }).toBe(pieces.slice(0, i + 1).join(""));
      }
      await ex.reportProgress({ step: 1, phase: "done" });
      return { type: "completed", result: result(pieces.join("")) };
    });
    const taskId = await submit(app, "what is the answer?");
    const { es, received } = open(`${url}/v1/tasks/${taskId}/events`, (input, init) =>
      fetch(input, { ...init, headers: { ...init.headers, ...auth() } }),
    );
    seen = received;
    await expect.poll(() => es.readyState, { timeout: 15_000 }).toBe(EventSource.CLOSED);

    expect(received.map((e) => e.event)).toEqual([
      "status",
      "progress",
      ...pieces.map(() => "delta"),
      "progress",
      "completed",
    ]);
    expect(received.filter((e) => e.event === "delta").map((e) => e.data)).toEqual(
      pieces.map((text, i) => ({
        type: "delta",
        taskId,
        step: 1,
        offset: pieces.slice(0, i).join("").length,
        text,
      })),
    );
    const text = new StreamedText();
    for (const e of received.filter((x) => x.event === "delta"))
      text.apply({ step: e.data.step ?? 0, offset: e.data.offset ?? 0, text: e.data.text ?? "" });
    expect(text.text(1)).toBe(received.at(-1)?.data.result?.text);
    expect(strictlyIncreasing(received.map((e) => e.id))).toBe(true);
  });

  it("a reconnect replays only the text after Last-Event-ID; a new client mid-task gets the text so far, then the rest live", async () => {
    const first = gate();
    const second = gate();
    const { app, url, streams } = await setup(async (ex) => {
      ex.publishText({ step: 1, offset: 0, text: "Hello " });
      await ex.reportProgress({ step: 1, phase: "model" });
      await first.wait;
      ex.publishText({ step: 1, offset: 6, text: "brave " });
      await ex.reportProgress({ step: 1, phase: "model" });
      await second.wait;
      ex.publishText({ step: 1, offset: 12, text: "new world." });
      await ex.reportProgress({ step: 1, phase: "done" });
      return { type: "completed", result: result("Hello brave new world.") };
    });
    closers.push(() => [first, second].forEach((g) => g.open()));
    const taskId = await submit(app, "greet");
    const reconnect = gate();
    let fetches = 0;
    const a = open(`${url}/v1/tasks/${taskId}/events`, async (input, init) => {
      if (++fetches > 1) await reconnect.wait;
      return fetch(input, { ...init, headers: { ...init.headers, ...auth() } });
    });
    await expect.poll(() => textOf(a.received), { timeout: 10_000 }).toBe("Hello ");
    // Dropped; the task goes on meanwhile.
    for (const stream of streams) stream.abort();
    await expect.poll(() => a.es.readyState, { timeout: 10_000 }).toBe(EventSource.CONNECTING);
    first.open();
    const b = open(`${url}/v1/tasks/${taskId}/events`, (input, init) =>
      fetch(input, { ...init, headers: { ...init.headers, ...auth() } }),
    );
    await expect.poll(() => textOf(b.received), { timeout: 10_000 }).toBe("Hello brave ");
    reconnect.open();
    await expect.poll(() => textOf(a.received), { timeout: 10_000 }).toBe("Hello brave ");
    second.open();
    for (const client of [a, b]) {
      await expect.poll(() => client.es.readyState, { timeout: 10_000 }).toBe(EventSource.CLOSED);
      // Every piece exactly once, in order: plain concatenation is the answer.
      expect(textOf(client.received)).toBe("Hello brave new world.");
      expect(client.received.at(-1)?.data.result?.text).toBe("Hello brave new world.");
    }
    expect(b.received[0]?.event).toBe("status");
  });
});
