import { AgentryError, type ErrorCode } from "@agentry/core";
import { fakeReply, startFakeAnthropic, type FakeAnthropic, type FakeReply } from "@agentry/testkit";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { responseText, type ModelRequest, type TextDelta, type ToolDefinition } from "../model/types.js";
import { estimateInputTokens } from "../estimate/estimate-tokens.js";
import { costMicroUsd } from "../pricing/pricing.js";
import { AnthropicModel, type AnthropicModelOptions } from "./anthropic-model.js";

const weather: ToolDefinition = {
  name: "get_weather",
  description: "Current weather for a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const remember: ToolDefinition = {
  name: "remember",
  description: "Store a fact",
  inputSchema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
};

let fake: FakeAnthropic;
// claude-sonnet-4-6 is the default model: no SDK deprecation warning.
const model = (options: AnthropicModelOptions = {}): AnthropicModel =>
  new AnthropicModel({
    apiKey: "test-key",
    baseURL: fake.url,
    defaultModel: "claude-sonnet-4-6",
    ...options,
  });

async function failure(promise: Promise<unknown>): Promise<AgentryError> {
  try {
    await promise;
  } catch (err) {
    if (AgentryError.isInstance(err)) return err;
    throw new Error(`expected an AgentryError, got ${String(err)}`, { cause: err });
  }
  throw new Error("expected the call to fail");
}

const ask = (extra: Partial<ModelRequest> = {}): ModelRequest => ({
  messages: [{ role: "user", content: "What's the weather in Paris?" }],
  maxTokens: 256,
  ...extra,
});

beforeAll(async () => {
  fake = await startFakeAnthropic();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.reset();
});

describe("AnthropicModel on the real SDK against the fake Messages API", () => {
  it("runs a full tool-use exchange and maps request and response both ways", async () => {
    const llm = model();
    fake.enqueue(
      fakeReply.toolUse(
        "get_weather",
        { city: "Paris" },
        {
          id: "toolu_01",
          text: "Let me check.",
          usage: {
            input_tokens: 120,
            output_tokens: 30,
            cache_creation_input_tokens: 7,
            cache_read_input_tokens: 11,
          },
        },
      ),
      fakeReply.text("It is 18°C in Paris."),
    );
    const first = await llm.generate(ask({ system: "You are helpful.", tools: [weather, remember] }));
    expect(first.stopReason).toBe("tool_use");
    expect(first.model).toBe("claude-sonnet-4-6");
    expect(first.content).toEqual([
      { type: "text", text: "Let me check." },
      { type: "tool_use", id: "toolu_01", name: "get_weather", input: { city: "Paris" } },
    ]);
    expect(first.usage).toEqual({ input: 120, output: 30, cacheCreationInput: 7, cacheReadInput: 11 });
    expect(first.providerRequestId).toMatch(/^req_fake_/);

    const sent = fake.requests[0];
    expect(sent?.path).toBe("/v1/messages");
    expect(sent?.headers["authorization"]).toBe("Bearer test-key");
    expect(sent?.headers["anthropic-version"]).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(sent?.body).toMatchObject({
      model: "claude-sonnet-4-6",
      max_tokens: 256,
      system: "You are helpful.",
      messages: [{ role: "user", content: "What's the weather in Paris?" }],
      tools: [
        { name: "get_weather", description: "Current weather for a city", input_schema: weather.inputSchema },
        { name: "remember", description: "Store a fact", input_schema: remember.inputSchema },
      ],
    });
    expect(JSON.stringify(sent?.body)).not.toContain("cache_control");

    const second = await llm.generate(
      ask({
        system: "You are helpful.",
        tools: [weather, remember],
        messages: [
          { role: "user", content: "What's the weather in Paris?" },
          { role: "assistant", content: first.content },
          {
            role: "user",
            content: [{ type: "tool_result", toolUseId: "toolu_01", content: '{"tempC":18}' }],
          },
        ],
      }),
    );
    expect(second.stopReason).toBe("end_turn");
    expect(second.content).toEqual([{ type: "text", text: "It is 18°C in Paris." }]);
    expect(second.usage.input).toBeGreaterThan(0);
    expect(second.usage.output).toBeGreaterThan(0);
    expect(fake.requests[1]?.body.messages).toEqual([
      { role: "user", content: "What's the weather in Paris?" },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Let me check." },
          { type: "tool_use", id: "toolu_01", name: "get_weather", input: { city: "Paris" } },
        ],
      },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_01", content: '{"tempC":18}' }] },
    ]);
  });

  it("sends is_error on an error tool_result and uses the request's model over the default", async () => {
    await model().generate(
      ask({
        model: "claude-haiku-4-5",
        messages: [
          { role: "user", content: "delete db in production" },
          {
            role: "assistant",
            content: [{ type: "tool_use", id: "toolu_9", name: "delete_resource", input: {} }],
          },
          {
            role: "user",
            content: [{ type: "tool_result", toolUseId: "toolu_9", content: "denied", isError: true }],
          },
        ],
      }),
    );
    const body = fake.requests[0]?.body;
    expect(body?.model).toBe("claude-haiku-4-5");
    expect(body?.messages?.[2]?.content).toEqual([
      { type: "tool_result", tool_use_id: "toolu_9", content: "denied", is_error: true },
    ]);
  });

  it("opt-in prompt caching marks the system block and the last tool, and the second call reads the cache", async () => {
    const llm = model();
    const system =
      "You are the Agentry reference assistant. Follow the operator's policies carefully. ".repeat(60);
    const request = ask({ system, tools: [weather, remember], cache: true });
    const first = await llm.generate(request);
    const body = fake.requests[0]?.body as unknown as Record<string, unknown> & {
      tools: Record<string, unknown>[];
    };
    expect(body["system"]).toEqual([{ type: "text", text: system, cache_control: { type: "ephemeral" } }]);
    expect(body.tools[0]?.["cache_control"]).toBeUndefined();
    expect(body.tools[1]?.["cache_control"]).toEqual({ type: "ephemeral" });
    expect(first.usage.cacheCreationInput).toBeGreaterThan(1024);
    expect(first.usage.cacheReadInput).toBe(0);

    const second = await llm.generate(request);
    expect(second.usage.cacheReadInput).toBe(first.usage.cacheCreationInput);
    expect(second.usage.cacheCreationInput).toBe(0);
    expect(second.usage.input).toBe(first.usage.input);
    expect(costMicroUsd(second.model, second.usage)).toBeLessThan(costMicroUsd(first.model, first.usage));
  });

  it("prices the usage of a cached call at each field's own rate (hand-computed)", async () => {
    fake.enqueue(
      fakeReply.text("ok", {
        usage: {
          input_tokens: 1000,
          output_tokens: 500,
          cache_creation_input_tokens: 2000,
          cache_read_input_tokens: 10000,
        },
      }),
    );
    const response = await model().generate(ask());
    // claude-sonnet-4-6 (as 4-5): $3 input, $3.75 cache write, $0.30 cache read, $15 output per MTok
    // = 3, 3.75, 0.30, 15 micro-USD per token:
    //   1000 × 3 = 3000;  2000 × 3.75 = 7500;  10000 × 0.30 = 3000;  500 × 15 = 7500  → 21000 µUSD ($0.021).
    // Pricing cache reads as input would give 48000; counting the cache write again as input 27000.
    expect(costMicroUsd(response.model, response.usage)).toBe(21_000);
  });
});

describe("streaming through the SDK's messages.stream helper", () => {
  it("sends stream: true and hands over text as it is generated; the pieces concatenate to the response's text", async () => {
    fake.enqueue({
      content: [
        { type: "text", text: "Checking the forecast for Paris now." },
        { type: "text", text: "One moment." },
        { type: "tool_use", id: "toolu_s", name: "get_weather", input: { city: "Paris", days: [1, 2, 3] } },
      ],
    });
    const deltas: TextDelta[] = [];
    const response = await model().generate(ask({ tools: [weather], onTextDelta: (d) => deltas.push(d) }));
    expect(fake.requests[0]?.body["stream"]).toBe(true);
    expect(response.content).toEqual([
      { type: "text", text: "Checking the forecast for Paris now." },
      { type: "text", text: "One moment." },
      { type: "tool_use", id: "toolu_s", name: "get_weather", input: { city: "Paris", days: [1, 2, 3] } },
    ]);
    expect(deltas.length).toBeGreaterThan(5);
    // Each piece starts where the one before ended; together they are the text blocks joined with "\n".
    expect(
      deltas.every(
        (d, i) =>
          d.offset ===
          (i === 0 ? 0 : (deltas[i - 1] as TextDelta).offset + (deltas[i - 1] as TextDelta).text.length),
      ),
    ).toBe(true);
    expect(deltas.map((d) => d.text).join("")).toBe(responseText(response.content));
    expect(deltas.map((d) => d.text)).toContain("\n");
  });

  it("takes usage from the final message: output from message_delta, cache writes and reads as the provider reported them", async () => {
    const usage = {
      input_tokens: 321,
      output_tokens: 77,
      cache_creation_input_tokens: 1_500,
      cache_read_input_tokens: 9_000,
    };
    fake.enqueue(fakeReply.text("Cached answer.", { usage }));
    const response = await model().generate(ask());
    // message_start said output 1; the final message carries message_delta's count.
    expect(response.usage).toEqual({
      input: 321,
      output: 77,
      cacheCreationInput: 1_500,
      cacheReadInput: 9_000,
    });
    expect(fake.billed()).toMatchObject({
      input: 321,
      output: 77,
      cacheCreationInput: 1_500,
      cacheReadInput: 9_000,
    });
  });

  it("a stream that stalls part-way fails after the idle timeout with a retryable PROVIDER_UNAVAILABLE, having sent the text so far", async () => {
    // message_start, ping, content_block_start, one text delta: then silence.
    fake.enqueue({
      ...fakeReply.text("The first words and then nothing more"),
      stream: { stallAfterEvents: 4 },
    });
    const deltas: TextDelta[] = [];
    const started = performance.now();
    const err = await failure(
      model({ idleTimeoutMs: 300 }).generate(ask({ onTextDelta: (d) => deltas.push(d) })),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(err).toMatchObject({ code: "PROVIDER_UNAVAILABLE", retryable: true, category: "provider" });
    expect(err.details).toMatchObject({
      reason: "idle_timeout",
      idleTimeoutMs: 300,
      requestId: expect.stringMatching(/^req_fake_/),
    });
    expect(deltas).toEqual([{ offset: 0, text: "The " }]);
    // Silence before the response starts counts too.
    fake.enqueue({ ...fakeReply.text("late"), delayMs: 10_000 });
    const early = await failure(model({ idleTimeoutMs: 200 }).generate(ask()));
    expect(early.details).toMatchObject({ reason: "idle_timeout" });
  });

  it("maps failures inside the stream: an error event by its type, a cut-off stream, an abort", async () => {
    fake.enqueue({
      ...fakeReply.text("about to be overloaded"),
      stream: { errorAfterEvents: { after: 4, type: "overloaded_error", message: "Overloaded" } },
    });
    const overloaded = await failure(model().generate(ask()));
    expect(overloaded).toMatchObject({ code: "PROVIDER_OVERLOADED", retryable: true });
    expect(overloaded.details).toMatchObject({ streamed: true, providerType: "overloaded_error" });

    fake.enqueue({
      ...fakeReply.text("about to be refused"),
      stream: { errorAfterEvents: { after: 3, type: "invalid_request_error", message: "bad" } },
    });
    expect(await failure(model().generate(ask()))).toMatchObject({
      code: "PROVIDER_BAD_REQUEST",
      retryable: false,
    });

    fake.enqueue({ ...fakeReply.text("cut off in the middle of it"), stream: { dropAfterEvents: 5 } });
    const cut = await failure(model().generate(ask()));
    expect(cut).toMatchObject({ code: "PROVIDER_UNAVAILABLE", retryable: true });
    expect(cut.details).toMatchObject({ reason: "stream_interrupted" });

    fake.enqueue({ ...fakeReply.text("slowly, word by word, to be aborted"), stream: { eventDelayMs: 50 } });
    const controller = new AbortController();
    const pending = model().generate(
      ask({ signal: controller.signal, onTextDelta: () => controller.abort() }),
    );
    expect(await failure(pending)).toMatchObject({ code: "CANCELLED", retryable: false });
  });

  it("a delta callback that throws does not break the call", async () => {
    fake.enqueue(fakeReply.text("still fine"));
    const response = await model().generate(
      ask({
        onTextDelta: () => {
          throw new Error("consumer bug");
        },
      }),
    );
    expect(response.content).toEqual([{ type: "text", text: "still fine" }]);
  });
});

describe("error mapping", () => {
  const cases: {
    name: string;
    reply: FakeReply;
    code: ErrorCode;
    retryable: boolean;
    retryAfterMs?: number;
    message?: string;
  }[] = [
    {
      name: "429 retry-after seconds",
      reply: fakeReply.rateLimited({ retryAfter: "2" }),
      code: "PROVIDER_RATE_LIMITED",
      retryable: true,
      retryAfterMs: 2000,
    },
    {
      name: "429 retry-after fractional seconds",
      reply: fakeReply.rateLimited({ retryAfter: "0.25" }),
      code: "PROVIDER_RATE_LIMITED",
      retryable: true,
      retryAfterMs: 250,
    },
    {
      name: "429 retry-after-ms",
      reply: fakeReply.rateLimited({ retryAfterMs: 1500, retryAfter: "2" }),
      code: "PROVIDER_RATE_LIMITED",
      retryable: true,
      retryAfterMs: 1500,
    },
    { name: "529 overloaded", reply: fakeReply.overloaded(), code: "PROVIDER_OVERLOADED", retryable: true },
    { name: "500", reply: fakeReply.serverError(500), code: "PROVIDER_UNAVAILABLE", retryable: true },
    {
      name: "502",
      reply: fakeReply.serverError(502, "Bad gateway"),
      code: "PROVIDER_UNAVAILABLE",
      retryable: true,
    },
    {
      name: "503",
      reply: fakeReply.serverError(503, "Unavailable"),
      code: "PROVIDER_UNAVAILABLE",
      retryable: true,
    },
    {
      name: "504",
      reply: fakeReply.error(504, "timeout_error", "Gateway timeout"),
      code: "PROVIDER_UNAVAILABLE",
      retryable: true,
    },
    {
      name: "400",
      reply: fakeReply.error(400, "invalid_request_error", "max_tokens: must be at most 64000"),
      code: "PROVIDER_BAD_REQUEST",
      retryable: false,
      message: "max_tokens: must be at most 64000",
    },
    {
      name: "401",
      reply: fakeReply.error(401, "authentication_error", "invalid x-api-key"),
      code: "PROVIDER_AUTH",
      retryable: false,
      message: "invalid x-api-key",
    },
    {
      name: "403",
      reply: fakeReply.error(403, "permission_error", "Your API key does not have permission"),
      code: "PROVIDER_AUTH",
      retryable: false,
      message: "does not have permission",
    },
    {
      name: "404 model",
      reply: fakeReply.error(404, "not_found_error", "model: claude-nope"),
      code: "UNKNOWN_MODEL",
      retryable: false,
      message: "model: claude-nope",
    },
    {
      name: "404 without an Anthropic body",
      reply: fakeReply.error(404, "", "Not Found"),
      code: "PROVIDER_BAD_REQUEST",
      retryable: false,
    },
    { name: "malformed body", reply: fakeReply.malformed(), code: "PROVIDER_BAD_RESPONSE", retryable: true },
    {
      name: "JSON of the wrong shape",
      reply: fakeReply.malformed('{"type":"message","content":"nope"}'),
      code: "PROVIDER_BAD_RESPONSE",
      retryable: true,
    },
    { name: "dropped connection", reply: fakeReply.drop(), code: "PROVIDER_UNAVAILABLE", retryable: true },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.code}`, async () => {
      fake.fail(c.reply);
      const err = await failure(model().generate(ask()));
      expect(err.code).toBe(c.code);
      expect(err.retryable).toBe(c.retryable);
      expect(err.category).toBe(c.code === "UNKNOWN_MODEL" ? "system" : "provider");
      expect(err.retryAfterMs).toBe(c.retryAfterMs);
      if (c.message !== undefined) expect(err.message).toContain(c.message);
      expect(fake.requests).toHaveLength(1);
    });
  }

  it("429 with retry-after as an HTTP date", async () => {
    fake.fail(fakeReply.rateLimited({ retryAfter: "Wed, 25 Nov 2026 12:00:30 GMT" }));
    const llm = model({ _internal: { now: () => Date.parse("2026-11-25T12:00:00Z") } });
    const err = await failure(llm.generate(ask()));
    expect(err.code).toBe("PROVIDER_RATE_LIMITED");
    expect(err.retryAfterMs).toBe(30_000);
    expect(err.details?.["requestId"]).toMatch(/^req_fake_/);
  });

  it("a timed-out request → PROVIDER_UNAVAILABLE (retryable)", async () => {
    fake.enqueue({ ...fakeReply.text("too late"), delayMs: 10_000 });
    const err = await failure(model({ timeoutMs: 200 }).generate(ask()));
    expect(err.code).toBe("PROVIDER_UNAVAILABLE");
    expect(err.retryable).toBe(true);
    expect(err.details?.["reason"]).toBe("timeout");
  });

  it("nothing listening → PROVIDER_UNAVAILABLE", async () => {
    const gone = await startFakeAnthropic();
    await gone.close();
    const err = await failure(
      new AnthropicModel({ apiKey: "k", baseURL: gone.url, defaultModel: "claude-haiku-4-5" }).generate(
        ask(),
      ),
    );
    expect(err.code).toBe("PROVIDER_UNAVAILABLE");
    expect(err.details?.["reason"]).toBe("connection");
  });

  it("an error the API itself raises for a bad request is PROVIDER_BAD_REQUEST with its message", async () => {
    const err = await failure(model().generate(ask({ maxTokens: 0 })));
    expect(err.code).toBe("PROVIDER_BAD_REQUEST");
    expect(err.message).toContain("max_tokens");
  });
});

describe("retries and abort", () => {
  it("with maxRetries 0 (the default) a 529 fails at once", async () => {
    fake.fail(fakeReply.overloaded());
    fake.enqueue(fakeReply.text("never reached"));
    const err = await failure(model().generate(ask()));
    expect(err.code).toBe("PROVIDER_OVERLOADED");
    expect(fake.requests).toHaveLength(1);
  });

  it("with maxRetries > 0 the SDK retries a 529, then succeeds", async () => {
    fake.fail(
      fakeReply.overloaded({ retryAfterMs: 5 }),
      fakeReply.error(500, "api_error", "Internal server error", { "retry-after-ms": "5" }),
    );
    fake.enqueue(fakeReply.text("third time lucky"));
    const response = await model({ maxRetries: 2 }).generate(ask());
    expect(response.content).toEqual([{ type: "text", text: "third time lucky" }]);
    expect(fake.requests).toHaveLength(3);
  });

  it("aborting an in-flight call → CANCELLED", async () => {
    fake.enqueue({ ...fakeReply.text("slow"), delayMs: 10_000 });
    const controller = new AbortController();
    const pending = model().generate(ask({ signal: controller.signal }));
    while (fake.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    const err = await failure(pending);
    expect(err.code).toBe("CANCELLED");
    expect(err.retryable).toBe(false);
  });

  it("an already-aborted signal → CANCELLED without a request", async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await failure(model().generate(ask({ signal: controller.signal })));
    expect(err.code).toBe("CANCELLED");
    expect(fake.requests).toHaveLength(0);
  });
});

describe("countInputTokens (POST /v1/messages/count_tokens through the SDK)", () => {
  const codeAndCjk: ModelRequest = ask({
    system: "You review code. 回答は日本語で。",
    tools: [weather],
    messages: [
      {
        role: "user",
        content: "この関数を説明して: const f = (xs) => xs.filter((x) => x % 2 === 0).map((x) => x ** 2);",
      },
    ],
  });

  it("sends the prompt generate sends, without max_tokens, and answers what generate is then billed", async () => {
    const inflated = await startFakeAnthropic({ tokenInflation: 4 });
    try {
      const llm = new AnthropicModel({
        apiKey: "k",
        baseURL: inflated.url,
        defaultModel: "claude-sonnet-4-6",
      });
      const counted = await llm.countInputTokens(codeAndCjk);
      const sent = inflated.requests[0];
      expect(sent?.path).toBe("/v1/messages/count_tokens");
      expect(sent?.body).not.toHaveProperty("max_tokens");
      const response = await llm.generate(codeAndCjk);
      const { max_tokens: _maxTokens, stream, ...created } = inflated.requests[1]?.body ?? {};
      expect(stream).toBe(true);
      expect(sent?.body).toEqual(created);
      const { input, cacheCreationInput, cacheReadInput } = response.usage;
      expect(counted).toBe(input + cacheCreationInput + cacheReadInput);
      // The premise of exact counting: this provider bills more than the estimate.
      expect(counted).toBeGreaterThan(estimateInputTokens(codeAndCjk));
      expect(inflated.billed()).toMatchObject({ calls: 1, countCalls: 1 });
    } finally {
      await inflated.close();
    }
  });

  it("fails closed: every count failure is a retryable provider error, never a guess", async () => {
    fake.failCountTokens(
      fakeReply.rateLimited({ retryAfter: "3" }),
      fakeReply.serverError(503),
      fakeReply.error(404, "not_found_error", "Not found"),
      fakeReply.malformed(),
    );
    const rateLimited = await failure(model().countInputTokens(ask()));
    expect(rateLimited).toMatchObject({ code: "PROVIDER_RATE_LIMITED", retryable: true, retryAfterMs: 3000 });
    expect(rateLimited.details?.["operation"]).toBe("count_tokens");
    expect(await failure(model().countInputTokens(ask()))).toMatchObject({
      code: "PROVIDER_UNAVAILABLE",
      retryable: true,
    });
    const missing = await failure(model().countInputTokens(ask()));
    expect(missing).toMatchObject({ code: "PROVIDER_UNAVAILABLE", retryable: true });
    expect(missing.details?.["countCode"]).toBe("UNKNOWN_MODEL");
    expect(await failure(model().countInputTokens(ask()))).toMatchObject({
      code: "PROVIDER_BAD_RESPONSE",
      retryable: true,
    });
    expect(fake.billed().calls).toBe(0);
  });

  it("an aborted count is CANCELLED", async () => {
    const controller = new AbortController();
    controller.abort();
    expect(await failure(model().countInputTokens(ask({ signal: controller.signal })))).toMatchObject({
      code: "CANCELLED",
    });
  });
});
