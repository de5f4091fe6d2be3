import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentryClient } from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { startProducerProcess, writeTempFile, type ProducerProcess } from "./harness.js";

// A flood of invalid submissions through the HTTP API (the producer as its own process): each is
// answered 4xx, nothing is enqueued, and the service keeps serving valid requests.

const redis = useTestRedis("faults-flood");
const prefix = redis.freshPrefix();
const KEY = "flood-key";
let producer: ProducerProcess;
let client: AgentryClient;

beforeAll(async () => {
  const keys = writeTempFile("api-keys", `${KEY}=acme\n`);
  producer = await startProducerProcess({
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_API_KEYS_FILE: keys,
    LOG_LEVEL: "warn",
  });
  client = new AgentryClient({ url: redis.url, prefix });
}, 90_000);
afterAll(async () => {
  await producer?.kill();
  await client?.close();
});

interface Attack {
  kind: string;
  headers: Record<string, string>;
  body: string;
}

const json = { "content-type": "application/json" };
const auth = { authorization: `Bearer ${KEY}` };

/** One invalid request of each kind, varied by `i`. */
function attacks(i: number): Attack[] {
  const ok = (body: unknown): Attack["body"] => JSON.stringify(body);
  return [
    { kind: "bad json", headers: { ...json, ...auth }, body: `{"prompt": "x${i}",` },
    { kind: "not an object", headers: { ...json, ...auth }, body: ok([`prompt ${i}`]) },
    { kind: "null body", headers: { ...json, ...auth }, body: "null" },
    { kind: "missing prompt", headers: { ...json, ...auth }, body: ok({ userId: `u${i}` }) },
    { kind: "empty prompt", headers: { ...json, ...auth }, body: ok({ prompt: " ".repeat(i % 5) }) },
    { kind: "prompt of the wrong type", headers: { ...json, ...auth }, body: ok({ prompt: i }) },
    {
      kind: "maxSteps of the wrong type",
      headers: { ...json, ...auth },
      body: ok({ prompt: "hi", maxSteps: `${i}` }),
    },
    {
      kind: "maxSteps out of range",
      headers: { ...json, ...auth },
      body: ok({ prompt: "hi", maxSteps: 1000 + i }),
    },
    {
      kind: "bad session id",
      headers: { ...json, ...auth },
      body: ok({ prompt: "hi", sessionId: `s ${i}/../x` }),
    },
    { kind: "unknown field", headers: { ...json, ...auth }, body: ok({ prompt: "hi", [`field${i}`]: true }) },
    {
      kind: "tenant in body",
      headers: { ...json, ...auth },
      body: ok({ prompt: "hi", tenant: "someone-else" }),
    },
    {
      kind: "oversized prompt",
      headers: { ...json, ...auth },
      body: ok({ prompt: "x".repeat(100_001 + i) }),
    },
    {
      kind: "oversized body",
      headers: { ...json, ...auth },
      body: ok({ prompt: "hi", metadata: { a: "y".repeat(1024 * 1024 + i) } }),
    },
    { kind: "no key", headers: json, body: ok({ prompt: `hi ${i}` }) },
    {
      kind: "wrong key",
      headers: { ...json, authorization: `Bearer nope-${i}` },
      body: ok({ prompt: `hi ${i}` }),
    },
    {
      kind: "not a bearer",
      headers: { ...json, authorization: `Basic ${Buffer.from(`${KEY}:x`).toString("base64")}` },
      body: ok({ prompt: "hi" }),
    },
    { kind: "wrong content type", headers: { ...auth, "content-type": "text/plain" }, body: `prompt ${i}` },
  ];
}

describe("a flood of invalid submissions", () => {
  it("answers each with 4xx, enqueues nothing and keeps serving", async () => {
    const all: Attack[] = [];
    for (let i = 0; all.length < 500; i++) all.push(...attacks(i));
    all.length = 500;

    const answers: { kind: string; status: number }[] = [];
    let next = 0;
    const send = async () => {
      while (next < all.length) {
        const a = all[next++] as Attack;
        const res = await fetch(`${producer.url}/v1/tasks`, {
          method: "POST",
          headers: a.headers,
          body: a.body,
        });
        await res.arrayBuffer();
        answers.push({ kind: a.kind, status: res.status });
      }
    };
    // 25 clients at once; health is asked while they hammer.
    const flood = Promise.all(Array.from({ length: 25 }, send));
    const health = await fetch(`${producer.url}/healthz`);
    expect(health.status).toBe(200);
    await flood;

    expect(answers).toHaveLength(500);
    const wrong = answers.filter((a) => a.status < 400 || a.status >= 500);
    expect(wrong).toEqual([]);
    const kinds = new Set(answers.map((a) => a.kind));
    expect(kinds.size).toBe(attacks(0).length);
    const statusesOf = (...k: string[]) =>
      new Set(answers.filter((a) => k.includes(a.kind)).map((a) => a.status));
    expect(statusesOf("no key", "wrong key", "not a bearer")).toEqual(new Set([401]));
    expect(statusesOf("oversized prompt", "oversized body")).toEqual(new Set([413]));
    // Nothing was enqueued.
    const counts = await client.queue.getJobCounts();
    expect(Object.values(counts).reduce((s, n) => s + n, 0)).toBe(0);

    // Still serving: a valid submission is accepted and readable.
    expect(producer.child.exitCode).toBeNull();
    const res = await fetch(`${producer.url}/v1/tasks`, {
      method: "POST",
      headers: { ...json, ...auth },
      body: JSON.stringify({ prompt: "Still there?" }),
    });
    expect(res.status).toBe(202);
    const { taskId } = (await res.json()) as { taskId: string };
    const status = await fetch(`${producer.url}/v1/tasks/${taskId}`, { headers: auth });
    expect(status.status).toBe(200);
    expect(((await status.json()) as { state: string }).state).toBe("queued");
    expect(Object.values(await client.queue.getJobCounts()).reduce((s, n) => s + n, 0)).toBe(1);
  }, 120_000);
});
