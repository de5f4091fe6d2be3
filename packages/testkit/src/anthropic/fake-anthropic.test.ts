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
      const body = (content: string) => ({ model: "m", max_tokens: 8, messages: [{ role: "user", content }] });
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
        { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: '{"tempC":18}' }] },
      ],
    });
    expect(second.json).toMatchObject({ stop_reason: "end_turn", content: [{ type: "text", text: 'You said: {"tempC":18}' }] });
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
