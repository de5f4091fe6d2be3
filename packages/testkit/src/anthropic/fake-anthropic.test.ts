import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fakeReply, startFakeAnthropic, type FakeAnthropic } from "./fake-anthropic.js";
import { fakePromptTokens, fakeTextTokens } from "./tokens.js";

const ENTRY = fileURLToPath(new URL("./fake-anthropic.ts", import.meta.url));

async function post(
  url: string,
  body: unknown,
  path = "/v1/messages",
): Promise<{ status: number; headers: Headers; json: unknown }> {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: JSON.parse(text) as unknown };
}

const weatherTool = {
  name: "get_weather",
  description: "Current weather for a city",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

describe("fake Anthropic Messages API", () => {
  let fake: FakeAnthropic;
  beforeAll(async () => {
    fake = await startFakeAnthropic({ minCacheableTokens: 50 });
  });
  afterAll(async () => {
    await fake.close();
  });

  it("answers in the Messages API shape and records the request", async () => {
    fake.enqueue(fakeReply.text("hello there"));
    const res = await post(fake.url, {
      model: "claude-sonnet-4-5",
      max_tokens: 64,
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("request-id")).toMatch(/^req_fake_/);
    expect(res.json).toMatchObject({
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5",
      content: [{ type: "text", text: "hello there" }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: { cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
    const usage = (res.json as { usage: { input_tokens: number; output_tokens: number } }).usage;
    expect(usage.input_tokens).toBeGreaterThan(0);
    expect(usage.output_tokens).toBe(fakeTextTokens("hello there"));
    expect(fake.requests.at(-1)?.body.messages?.[0]?.content).toBe("Hi");
    expect(fake.requests.at(-1)?.headers["x-api-key"]).toBe("k");
  });

  it("tells when each response has gone out, slow ones after fast ones", async () => {
    const closed: string[] = [];
    const own = await startFakeAnthropic({
      handler: (r) => fakeReply.text("ok", { delayMs: r.body.messages?.[0]?.content === "slow" ? 200 : 0 }),
      onResponseClosed: (r) => closed.push(String(r.body.messages?.[0]?.content)),
    });
    try {
      const body = (content: string) => ({
        model: "m",
        max_tokens: 8,
        messages: [{ role: "user", content }],
      });
      const slow = post(own.url, body("slow"));
      await expect.poll(() => own.requests.length).toBe(1);
      expect((await post(own.url, body("fast"))).status).toBe(200);
      await expect.poll(() => closed).toEqual(["fast"]);
      expect((await slow).status).toBe(200);
      await expect.poll(() => closed).toEqual(["fast", "slow"]);
    } finally {
      await own.close();
    }
  });

  it("injects failures with the real error body", async () => {
    fake.fail(fakeReply.rateLimited({ retryAfter: "7" }), fakeReply.overloaded());
    const limited = await post(fake.url, {
      model: "m",
      max_tokens: 5,
      messages: [{ role: "user", content: "x" }],
    });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("7");
    expect(limited.json).toMatchObject({ type: "error", error: { type: "rate_limit_error" } });
    const overloaded = await post(fake.url, {
      model: "m",
      max_tokens: 5,
      messages: [{ role: "user", content: "x" }],
    });
    expect(overloaded.status).toBe(529);
    expect(overloaded.json).toMatchObject({
      type: "error",
      error: { type: "overloaded_error", message: "Overloaded" },
    });
  });

  it("rejects an invalid request with invalid_request_error", async () => {
    const res = await post(fake.url, { model: "m", messages: [{ role: "user", content: "x" }] });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
  });

  it("without script or handler: echoes the last user message and calls no tool, even one offered", async () => {
    const first = await post(fake.url, {
      model: "m",
      max_tokens: 100,
      tools: [weatherTool],
      messages: [{ role: "user", content: "What's the weather in Paris?" }],
    });
    expect(first.json).toMatchObject({
      stop_reason: "end_turn",
      content: [{ type: "text", text: "You said: What's the weather in Paris?" }],
    });
    const second = await post(fake.url, {
      model: "m",
      max_tokens: 100,
      tools: [weatherTool],
      messages: [
        { role: "user", content: "What's the weather in Paris?" },
        {
          role: "assistant",
          content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }],
        },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: '{"tempC":18}' }] },
      ],
    });
    expect(second.json).toMatchObject({
      stop_reason: "end_turn",
      content: [{ type: "text", text: 'You said: {"tempC":18}' }],
    });
  });

  it("accounts a cached prefix as a write first, then as a read", async () => {
    const body = {
      model: "m",
      max_tokens: 10,
      system: [
        {
          type: "text",
          text: "You are a careful assistant. ".repeat(40),
          cache_control: { type: "ephemeral" },
        },
      ],
      messages: [{ role: "user", content: "Hi" }],
    };
    const first = (await post(fake.url, body)).json as { usage: Record<string, number> };
    const second = (await post(fake.url, body)).json as { usage: Record<string, number> };
    expect(first.usage["cache_creation_input_tokens"]).toBeGreaterThan(0);
    expect(first.usage["cache_read_input_tokens"]).toBe(0);
    expect(second.usage["cache_read_input_tokens"]).toBe(first.usage["cache_creation_input_tokens"]);
    expect(second.usage["cache_creation_input_tokens"]).toBe(0);
    expect(second.usage["input_tokens"]).toBe(first.usage["input_tokens"]);
  });
});

/** Posts a `stream: true` request and reads its server-sent events to the end of the response. */
async function postStream(
  url: string,
  body: Record<string, unknown>,
  signal?: AbortSignal,
): Promise<{
  status: number;
  contentType: string | null;
  events: { event: string; data: Record<string, unknown> }[];
}> {
  const res = await fetch(`${url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01" },
    body: JSON.stringify({ ...body, stream: true }),
    ...(signal ? { signal } : {}),
  });
  const text = await res.text();
  const events = text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? "";
      const data = JSON.parse(lines.find((l) => l.startsWith("data: "))?.slice(6) ?? "null") as Record<
        string,
        unknown
      >;
      return { event, data };
    });
  return { status: res.status, contentType: res.headers.get("content-type"), events };
}

describe("fake Anthropic streaming (stream: true)", () => {
  let fake: FakeAnthropic;
  beforeAll(async () => {
    fake = await startFakeAnthropic({ minCacheableTokens: 50 });
  });
  afterAll(async () => {
    await fake.close();
  });
  const ask = { model: "claude-sonnet-4-6", max_tokens: 200, messages: [{ role: "user", content: "Hi" }] };

  it("frames a text and tool_use answer as the Messages streaming events, usage in message_start and message_delta", async () => {
    fake.reset();
    fake.enqueue(
      fakeReply.toolUse(
        "get_weather",
        { city: "Paris", units: "metric" },
        { id: "toolu_s1", text: "Let me check the weather." },
      ),
    );
    const { status, contentType, events } = await postStream(fake.url, ask);
    expect(status).toBe(200);
    expect(contentType).toMatch(/^text\/event-stream/);
    const names = events.map((e) => e.event);
    expect(names.slice(0, 3)).toEqual(["message_start", "ping", "content_block_start"]);
    expect(names.slice(-2)).toEqual(["message_delta", "message_stop"]);
    // Every event's data names its own type, as the SDK's parser expects.
    for (const e of events) expect(e.data["type"]).toBe(e.event);
    const deltas = events
      .filter((e) => e.event === "content_block_delta")
      .map((e) => e.data as { index: number; delta: Record<string, string> });
    const text = deltas.filter((d) => d.delta["type"] === "text_delta");
    expect(text.length).toBeGreaterThan(1);
    expect(text.map((d) => d.delta["text"]).join("")).toBe("Let me check the weather.");
    const json = deltas.filter((d) => d.delta["type"] === "input_json_delta");
    expect(json.every((d) => d.index === 1)).toBe(true);
    expect(JSON.parse(json.map((d) => d.delta["partial_json"]).join(""))).toEqual({
      city: "Paris",
      units: "metric",
    });
    const start = events[0]?.data["message"] as { usage: Record<string, number>; content: unknown[] };
    const end = events.at(-2)?.data as { delta: { stop_reason: string }; usage: Record<string, number> };
    expect(start.content).toEqual([]);
    expect(end.delta.stop_reason).toBe("tool_use");
    expect(end.usage["input_tokens"]).toBe(start.usage["input_tokens"]);
    expect(end.usage["output_tokens"]).toBeGreaterThan(1);
    expect(fake.billed()).toMatchObject({
      calls: 1,
      input: start.usage["input_tokens"],
      output: end.usage["output_tokens"],
    });
  });

  it("reports cached prompt tokens in the stream as in a JSON answer", async () => {
    fake.reset();
    const body = {
      ...ask,
      system: [
        {
          type: "text",
          text: "You are a careful assistant. ".repeat(40),
          cache_control: { type: "ephemeral" },
        },
      ],
    };
    const first = await postStream(fake.url, body);
    const second = await postStream(fake.url, body);
    const usageOf = (r: typeof first) =>
      (r.events.find((e) => e.event === "message_delta")?.data as { usage: Record<string, number> }).usage;
    expect(usageOf(first)["cache_creation_input_tokens"]).toBeGreaterThan(0);
    expect(usageOf(second)["cache_read_input_tokens"]).toBe(usageOf(first)["cache_creation_input_tokens"]);
    expect(fake.billed().cacheReadInput).toBe(usageOf(first)["cache_creation_input_tokens"]);
  });

  it("paces events, and stalls, cuts off or fails a stream part-way; a cut stream bills its prompt only", async () => {
    fake.reset();
    const sent: number[] = [];
    const paced = await startFakeAnthropic({
      streamEventDelayMs: 20,
      onStreamEvent: (e) => sent.push(e.sentAt),
    });
    try {
      paced.enqueue(fakeReply.text("one two three"));
      const { events } = await postStream(paced.url, ask);
      expect(events).toHaveLength(sent.length);
      // Each event after the first waited for its 20 ms timer (timers round to whole milliseconds).
      expect(sent.slice(1).every((t, i) => t - (sent[i] as number) >= 19)).toBe(true);
    } finally {
      await paced.close();
    }

    fake.enqueue({
      ...fakeReply.text("cut short here"),
      stream: { errorAfterEvents: { after: 4, type: "overloaded_error", message: "Overloaded" } },
    });
    const failed = await postStream(fake.url, ask);
    expect(failed.events.map((e) => e.event)).toEqual([
      "message_start",
      "ping",
      "content_block_start",
      "content_block_delta",
      "error",
    ]);
    expect(failed.events.at(-1)?.data).toMatchObject({ type: "error", error: { type: "overloaded_error" } });

    fake.reset();
    fake.enqueue({ ...fakeReply.text("dropped part-way"), stream: { dropAfterEvents: 3 } });
    await expect(postStream(fake.url, ask)).rejects.toThrow();
    expect(fake.billed()).toMatchObject({ calls: 1, output: 0 });

    fake.enqueue({ ...fakeReply.text("stalled after two events"), stream: { stallAfterEvents: 2 } });
    const controller = new AbortController();
    const stalled = postStream(fake.url, ask, controller.signal);
    await expect.poll(() => fake.requests.length).toBe(2);
    // The stream stays open with nothing more to read until the client gives up.
    const outcome = await Promise.race([
      stalled.then(() => "ended"),
      new Promise((r) => setTimeout(() => r("open"), 200)),
    ]);
    expect(outcome).toBe("open");
    controller.abort();
    await expect(stalled).rejects.toThrow();
  });

  it("answers a malformed reply to a streaming request with an event whose data is not a message", async () => {
    fake.reset();
    fake.fail(fakeReply.malformed());
    const res = await fetch(`${fake.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...ask, stream: true }),
    });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(await res.text()).toMatch(/^event: message_start\ndata: \{"id": "msg_broken"/);
  });
});

describe("fake Anthropic count_tokens and billing", () => {
  let fake: FakeAnthropic;
  beforeAll(async () => {
    fake = await startFakeAnthropic({ minCacheableTokens: 50, tokenInflation: 4 });
  });
  afterAll(async () => {
    await fake.close();
  });

  const code = "function add(a, b) { return a + b; } // 合計を返す\nconst xs = [1, 2, 3].map((x) => x * 2);";

  it("counts exactly what it then bills, cached prefix included, and never bills a count", async () => {
    fake.reset();
    const prompt = {
      model: "m",
      system: [{ type: "text", text: `${code}\n`.repeat(10), cache_control: { type: "ephemeral" } }],
      tools: [weatherTool],
      messages: [{ role: "user", content: `Explain: ${code}` }],
    };
    const counted = await post(fake.url, prompt, "/v1/messages/count_tokens");
    expect(counted.status).toBe(200);
    const { input_tokens } = counted.json as { input_tokens: number };
    expect(input_tokens).toBe(fakePromptTokens(prompt, 4));
    for (let i = 0; i < 2; i++) {
      const usage = (
        (await post(fake.url, { ...prompt, max_tokens: 64 })).json as { usage: Record<string, number> }
      ).usage;
      const prompted =
        (usage["input_tokens"] ?? 0) +
        (usage["cache_creation_input_tokens"] ?? 0) +
        (usage["cache_read_input_tokens"] ?? 0);
      expect(prompted).toBe(input_tokens);
    }
    const billed = fake.billed();
    expect(billed.calls).toBe(2);
    expect(billed.countCalls).toBe(1);
    expect(billed.cacheReadInput).toBeGreaterThan(0);
    expect(billed.tokens).toBe(2 * input_tokens + billed.output);
  });

  it("inflation makes code and non-English text count more, English words not", () => {
    expect(fakeTextTokens(code, 4)).toBeGreaterThan(2.5 * fakeTextTokens(code));
    expect(fakeTextTokens("日本語のテキスト", 4)).toBe(4 * fakeTextTokens("日本語のテキスト"));
    expect(fakeTextTokens("plain English words only", 4)).toBe(fakeTextTokens("plain English words only"));
  });

  it("never reports more output than max_tokens", async () => {
    fake.reset();
    fake.enqueue(fakeReply.text("a long answer ".repeat(50)));
    const res = await post(fake.url, {
      model: "m",
      max_tokens: 8,
      messages: [{ role: "user", content: "x" }],
    });
    expect(res.json).toMatchObject({ stop_reason: "max_tokens", usage: { output_tokens: 8 } });
    expect(fake.billed().output).toBe(8);
  });

  it("fails count_tokens from its own queue, leaving scripted replies alone; rejects max_tokens there", async () => {
    fake.reset();
    fake.enqueue(fakeReply.text("scripted"));
    fake.failCountTokens(fakeReply.overloaded());
    const body = { model: "m", messages: [{ role: "user", content: "x" }] };
    expect((await post(fake.url, body, "/v1/messages/count_tokens")).status).toBe(529);
    expect((await post(fake.url, body, "/v1/messages/count_tokens")).status).toBe(200);
    expect((await post(fake.url, { ...body, max_tokens: 5 }, "/v1/messages/count_tokens")).status).toBe(400);
    expect((await post(fake.url, { ...body, max_tokens: 5 })).json).toMatchObject({
      content: [{ type: "text", text: "scripted" }],
    });
    expect(fake.billed()).toMatchObject({ calls: 1, countCalls: 1 });
  });
});

describe("fake Anthropic as a standalone process", () => {
  it("starts with --port and --script and answers from the script, then with the echo", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fake-anthropic-"));
    const script = join(dir, "script.json");
    writeFileSync(script, JSON.stringify([{ content: "scripted answer" }]));
    const child = spawn(process.execPath, ["--import", "tsx", ENTRY, "--port", "0", "--script", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const rl = createInterface({ input: child.stdout });
        rl.once("line", resolve);
        child.once("exit", (code) => reject(new Error(`fake-anthropic exited with ${String(code)}`)));
      });
      const { url } = JSON.parse(line) as { url: string };
      const a = await post(url, {
        model: "m",
        max_tokens: 10,
        messages: [{ role: "user", content: "hello" }],
      });
      expect(a.json).toMatchObject({ content: [{ type: "text", text: "scripted answer" }] });
      const b = await post(url, {
        model: "m",
        max_tokens: 10,
        messages: [{ role: "user", content: "hello" }],
      });
      expect(b.json).toMatchObject({ content: [{ type: "text", text: "You said: hello" }] });
    } finally {
      child.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
