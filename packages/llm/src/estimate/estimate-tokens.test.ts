import { startFakeAnthropic, type FakeAnthropic } from "@agentry/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AnthropicModel } from "../anthropic/anthropic-model.js";
import type { ModelRequest, ToolDefinition } from "../model/types.js";
import { estimateInputTokens, estimateRequestTokens, estimateTextTokens } from "./estimate-tokens.js";

const longSchemaTool: ToolDefinition = {
  name: "create_deployment",
  description:
    "Creates a deployment of a service in an environment, with replicas, resources and rollout settings.",
  inputSchema: {
    type: "object",
    properties: {
      service: { type: "string", description: "Service name, e.g. checkout-api" },
      env: { type: "string", enum: ["development", "staging", "production"] },
      replicas: { type: "integer", minimum: 1, maximum: 100 },
      resources: {
        type: "object",
        properties: {
          cpu: { type: "string", pattern: "^[0-9]+m$" },
          memory: { type: "string", pattern: "^[0-9]+(Mi|Gi)$" },
          gpu: { type: "object", properties: { kind: { type: "string" }, count: { type: "integer" } } },
        },
        required: ["cpu", "memory"],
      },
      rollout: {
        type: "object",
        properties: {
          strategy: { type: "string", enum: ["rolling", "blue-green", "canary"] },
          maxSurge: { type: "string" },
          maxUnavailable: { type: "string" },
          canarySteps: {
            type: "array",
            items: {
              type: "object",
              properties: { weight: { type: "integer" }, pauseSec: { type: "integer" } },
            },
          },
        },
      },
      labels: { type: "object", additionalProperties: { type: "string" } },
    },
    required: ["service", "env"],
  },
};

const weather: ToolDefinition = {
  name: "get_weather",
  description: "Current weather for a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

const code = `export async function retry<T>(fn: () => Promise<T>, attempts = 3): Promise<T> {
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
        try { return await fn(); } catch (err) { last = err; await new Promise((r) => setTimeout(r, 2 ** i * 100)); }
    }
    throw last;
}`;

const json = JSON.stringify({
  forecast: Array.from({ length: 12 }, (_, h) => ({
    h,
    t: 12 + (h % 5),
    w: { s: 3.2, d: "NW" },
    p: [0.1, 0.2, h / 10],
  })),
  ok: true,
  id: "a1b2c3",
});

const fixtures: Record<string, ModelRequest> = {
  "short English": { messages: [{ role: "user", content: "Hi!" }], maxTokens: 100 },
  "English prose with system": {
    system: "You are a concise, friendly assistant for an operations team. Answer in plain English.",
    messages: [
      {
        role: "user",
        content:
          "Could you summarise what happened during last night's incident? The database failover took about four minutes, and several customers reported timeouts on checkout.",
      },
    ],
    maxTokens: 512,
  },
  "JSON tool round trip": {
    tools: [weather],
    messages: [
      { role: "user", content: "What's the weather in Reykjavík?" },
      {
        role: "assistant",
        content: [
          {
            type: "tool_use",
            id: "toolu_01A2b3C4d5E6f7G8h9",
            name: "get_weather",
            input: { city: "Reykjavík", units: "metric" },
          },
        ],
      },
      {
        role: "user",
        content: [{ type: "tool_result", toolUseId: "toolu_01A2b3C4d5E6f7G8h9", content: json }],
      },
    ],
    maxTokens: 256,
  },
  "minified punctuation": {
    messages: [{ role: "user", content: '{"a":1,"b":[2,3],"c":{"d":null}};;;!!??<<>>{}[]()' }],
    maxTokens: 10,
  },
  "code with indentation": {
    messages: [{ role: "user", content: `Review this:\n\n\`\`\`ts\n${code}\n\`\`\`` }],
    maxTokens: 1024,
  },
  "non-ASCII and emoji": {
    system: "Réponds en français, s'il te plaît. 日本語も大丈夫です。",
    messages: [
      {
        role: "user",
        content: "Ça va? 👋🏽 Привет! 你好，世界。 Grüße aus Köln 🇩🇪 👨‍👩‍👧‍👦 naïve café — “quotes” …",
      },
      { role: "assistant", content: "Très bien, merci ! 😊" },
      { role: "user", content: "ありがとう 🙏 — 🎉🎉🎉" },
    ],
    maxTokens: 200,
  },
  "long tool schemas and an error result": {
    system: "You operate deployments. Never touch production without approval.",
    tools: [longSchemaTool, weather],
    messages: [
      { role: "user", content: "Deploy checkout-api to staging with 3 replicas." },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Deploying now." },
          {
            type: "tool_use",
            id: "toolu_deploy_1",
            name: "create_deployment",
            input: {
              service: "checkout-api",
              env: "staging",
              replicas: 3,
              resources: { cpu: "500m", memory: "512Mi" },
            },
          },
        ],
      },
      {
        role: "user",
        content: [
          {
            type: "tool_result",
            toolUseId: "toolu_deploy_1",
            content: "POLICY_DENIED: requires approval (no-prod-delete)",
            isError: true,
          },
        ],
      },
    ],
    maxTokens: 2048,
  },
  "many short turns": {
    messages: Array.from({ length: 30 }, (_, i) => ({
      role: i % 2 === 0 ? ("user" as const) : ("assistant" as const),
      content: i % 2 === 0 ? `q${i}?` : "ok",
    })),
    maxTokens: 50,
  },
  "whitespace heavy": {
    messages: [{ role: "user", content: `a\n\n\n\n\tb        c\r\n${" ".repeat(64)}d\u00a0\u00a0e` }],
    maxTokens: 10,
  },
};

let fake: FakeAnthropic;
let llm: AnthropicModel;
beforeAll(async () => {
  fake = await startFakeAnthropic({ minCacheableTokens: 0 });
  llm = new AnthropicModel({ apiKey: "k", baseURL: fake.url, defaultModel: "claude-haiku-4-5" });
});
afterAll(async () => {
  await fake.close();
});

describe("estimateInputTokens", () => {
  for (const [name, request] of Object.entries(fixtures)) {
    for (const cache of [false, true]) {
      it(`never undershoots what the API reports: ${name}${cache ? " (cached)" : ""}`, async () => {
        const response = await llm.generate({ ...request, cache });
        const reported =
          response.usage.input + response.usage.cacheCreationInput + response.usage.cacheReadInput;
        const estimate = estimateInputTokens(request);
        expect(estimate).toBeGreaterThanOrEqual(reported);
        // and stays useful for budgets: not wildly above (1.3–1.8× on these fixtures)
        expect(estimate).toBeLessThanOrEqual(Math.max(reported * 3, reported + 40));
      });
    }
  }

  it("adds maxTokens for the request estimate", () => {
    const request = fixtures["English prose with system"] as ModelRequest;
    expect(estimateRequestTokens(request)).toBe(estimateInputTokens(request) + 512);
  });

  it("counts every block kind and the tools", () => {
    const base: ModelRequest = { messages: [{ role: "user", content: "hello" }], maxTokens: 1 };
    const withTools = { ...base, tools: [weather] };
    const withResult: ModelRequest = {
      ...base,
      messages: [
        ...base.messages,
        {
          role: "user",
          content: [{ type: "tool_result", toolUseId: "t1", content: "a long result ".repeat(10) }],
        },
      ],
    };
    expect(estimateInputTokens(withTools)).toBeGreaterThan(estimateInputTokens(base) + 400);
    expect(estimateInputTokens(withResult)).toBeGreaterThan(estimateInputTokens(base) + 30);
  });

  it("follows the documented per-string rule", () => {
    expect(estimateTextTokens("")).toBe(0);
    expect(estimateTextTokens("hello world")).toBe(4); // hel|lo + wor|ld, the single space is free
    expect(estimateTextTokens('{"a":1}')).toBe(7); // 5 punctuation + a + 1
    expect(estimateTextTokens("日本")).toBe(4);
    expect(estimateTextTokens("👋")).toBe(4);
    expect(estimateTextTokens("a\n\nb")).toBe(3);
  });
});
