// The agent loop over the real @anthropic-ai/sdk, pointed at the fake Messages API server.
import { AnthropicModel, type Usage } from "@agentry/llm";
import { fakeReply, startFakeAnthropic, type FakeAnthropic, type WireBlock } from "@agentry/testkit";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { ToolRegistry } from "../tools/registry.js";
import { defineTool } from "../tools/tool.js";
import type { AgentHooks } from "./hooks.js";
import { runAgent, type AgentResult } from "./run-agent.js";
import type { AgentState } from "./state.js";

let fake: FakeAnthropic;
beforeAll(async () => {
  fake = await startFakeAnthropic();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

const model = (): AnthropicModel =>
  new AnthropicModel({ apiKey: "test-key", baseURL: fake.url, defaultModel: "claude-sonnet-4-6" });
const run = { taskId: "task-a", tenant: "acme", userId: "alice", sessionId: "sess-a" };
const usage = (input: number, output: number) => ({
  input_tokens: input,
  output_tokens: output,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0,
});

/** Fresh tools each call, with one shared invocation counter (a "process" gets its own registry). */
function tools(counts: Record<string, number>): ToolRegistry {
  const bump = (name: string) => (counts[name] = (counts[name] ?? 0) + 1);
  return new ToolRegistry().register(
    defineTool({
      name: "get_weather",
      description: "Current weather for a city",
      input: z.object({ city: z.string().min(1) }),
      handler: ({ city }) => {
        bump("get_weather");
        return { city, tempC: city === "Oslo" ? 3 : 21 };
      },
    }),
    defineTool({
      name: "delete_resource",
      description: "Delete a resource (simulated)",
      input: z.object({ resource: z.string(), env: z.enum(["dev", "staging", "production"]) }),
      handler: ({ resource, env }) => {
        bump("delete_resource");
        return `deleted ${resource} in ${env}`;
      },
    }),
    defineTool({
      name: "flaky",
      description: "Always fails",
      input: z.object({}),
      handler: () => {
        bump("flaky");
        throw new Error("upstream 503");
      },
    }),
    defineTool({
      name: "slow",
      description: "Never answers in time",
      input: z.object({}),
      timeoutMs: 25,
      handler: () => {
        bump("slow");
        return new Promise<never>(() => undefined);
      },
    }),
  );
}

/** Tool results of the last user message of the n-th request the fake received. */
function wireResults(n: number): WireBlock[] {
  const last = fake.requests[n]?.body.messages?.at(-1);
  expect(last?.role).toBe("user");
  return Array.isArray(last?.content) ? last.content.filter((b) => b.type === "tool_result") : [];
}

function completed(result: AgentResult): Extract<AgentResult, { status: "completed" }> {
  if (result.status !== "completed") throw new Error(`expected completed, got ${result.status}`);
  return result;
}

describe("runAgent with the Anthropic SDK against the fake Messages API", () => {
  it("runs a multi-step tool conversation and sums usage", async () => {
    fake.enqueue(
      fakeReply.toolUse(
        "get_weather",
        { city: "Oslo" },
        { id: "toolu_1", text: "Checking Oslo.", usage: usage(400, 30) },
      ),
      fakeReply.toolUse("get_weather", { city: "Rome" }, { id: "toolu_2", usage: usage(520, 25) }),
      fakeReply.text("Oslo is 3°C; Rome is 21°C.", {
        usage: { ...usage(600, 15), cache_read_input_tokens: 100 },
      }),
    );
    const counts: Record<string, number> = {};
    const result = completed(
      await runAgent({
        model: model(),
        tools: tools(counts),
        run,
        system: "You are terse.",
        messages: [{ role: "user", content: "Weather in Oslo and Rome?" }],
      }),
    );
    expect(result.text).toBe("Oslo is 3°C; Rome is 21°C.");
    expect(result.steps).toBe(3);
    expect(result.usage).toEqual<Usage>({
      input: 1520,
      output: 70,
      cacheCreationInput: 0,
      cacheReadInput: 100,
    });
    expect(counts).toEqual({ get_weather: 2 });

    expect(fake.requests).toHaveLength(3);
    const first = fake.requests[0]?.body;
    expect(first?.system).toBe("You are terse.");
    expect(first?.max_tokens).toBe(1024);
    expect(first?.tools?.map((t) => t.name)).toEqual(["get_weather", "delete_resource", "flaky", "slow"]);
    expect(first?.tools?.[0]?.input_schema).toMatchObject({
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    });
    expect(wireResults(1)).toEqual([
      { type: "tool_result", tool_use_id: "toolu_1", content: '{"city":"Oslo","tempC":3}' },
    ]);
    expect(wireResults(2)).toEqual([
      { type: "tool_result", tool_use_id: "toolu_2", content: '{"city":"Rome","tempC":21}' },
    ]);
    // The assistant turns went back verbatim, tool_use blocks included.
    expect(fake.requests[2]?.body.messages?.map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "user",
      "assistant",
      "user",
    ]);
    expect(result.newMessages).toHaveLength(5);
  });

  it("runs parallel tool calls and returns their results in call order in one message", async () => {
    fake.enqueue(
      {
        content: [
          { type: "tool_use", id: "toolu_a", name: "get_weather", input: { city: "Oslo" } },
          { type: "tool_use", id: "toolu_b", name: "get_weather", input: { city: "Rome" } },
          { type: "tool_use", id: "toolu_c", name: "get_weather", input: { city: "Lima" } },
        ],
      },
      fakeReply.text("Done."),
    );
    const counts: Record<string, number> = {};
    completed(
      await runAgent({
        model: model(),
        tools: tools(counts),
        run,
        messages: [{ role: "user", content: "Three cities" }],
      }),
    );
    expect(counts).toEqual({ get_weather: 3 });
    expect(wireResults(1).map((b) => b.tool_use_id)).toEqual(["toolu_a", "toolu_b", "toolu_c"]);
    expect(fake.requests[1]?.body.messages).toHaveLength(3);
  });

  it("sends each tool failure mode back as an is_error tool_result and finishes the task", async () => {
    fake.enqueue(
      {
        content: [
          {
            type: "tool_use",
            id: "toolu_schema",
            name: "delete_resource",
            input: { resource: 42, env: "moon" },
          },
          { type: "tool_use", id: "toolu_unknown", name: "launch_rocket", input: {} },
          { type: "tool_use", id: "toolu_throw", name: "flaky", input: {} },
          { type: "tool_use", id: "toolu_timeout", name: "slow", input: {} },
          { type: "tool_use", id: "toolu_string", name: "get_weather", input: "Oslo, please" },
        ],
      },
      fakeReply.text("Nothing worked, sorry."),
    );
    const counts: Record<string, number> = {};
    const result = completed(
      await runAgent({
        model: model(),
        tools: tools(counts),
        run,
        messages: [{ role: "user", content: "Try everything" }],
      }),
    );
    expect(result.text).toBe("Nothing worked, sorry.");
    expect(counts).toEqual({ flaky: 1, slow: 1 });
    const [schema, unknown, thrown, timeout, notJson] = wireResults(1);
    expect(schema).toMatchObject({ tool_use_id: "toolu_schema", is_error: true });
    expect(schema?.content).toMatch(/Invalid input for tool "delete_resource":\n- resource: .*\n- env: /);
    expect(unknown).toMatchObject({
      tool_use_id: "toolu_unknown",
      is_error: true,
      content: 'Unknown tool "launch_rocket". Available tools: get_weather, delete_resource, flaky, slow.',
    });
    expect(thrown).toMatchObject({
      tool_use_id: "toolu_throw",
      is_error: true,
      content: 'Tool "flaky" failed: upstream 503',
    });
    expect(timeout).toMatchObject({ tool_use_id: "toolu_timeout", is_error: true });
    expect(timeout?.content).toContain("timed out after 25 ms");
    expect(notJson).toMatchObject({ tool_use_id: "toolu_string", is_error: true });
    expect(notJson?.content).toContain("not valid JSON");
  });

  it("suspends for approval, round-trips the state through JSON and resumes in a fresh loop running each tool exactly once", async () => {
    const approvals = new Map<string, "pending" | "approved">();
    const approvalHook: AgentHooks = {
      beforeToolCall: async ({ call, previousSuspension }) => {
        if (call.name !== "delete_resource") return { type: "allow" };
        const id = previousSuspension?.data?.approvalId;
        if (typeof id === "string" && approvals.get(id) === "approved") return { type: "allow" };
        if (typeof id === "string")
          return { type: "suspend", reason: "awaiting approval", data: { approvalId: id } };
        approvals.set(`ap-${call.id}`, "pending");
        return {
          type: "suspend",
          reason: "delete_resource needs one approval",
          data: { approvalId: `ap-${call.id}` },
        };
      },
    };
    fake.enqueue(
      {
        content: [
          { type: "text", text: "Checking, then deleting." },
          { type: "tool_use", id: "toolu_w", name: "get_weather", input: { city: "Oslo" } },
          {
            type: "tool_use",
            id: "toolu_d",
            name: "delete_resource",
            input: { resource: "vm-7", env: "staging" },
          },
        ],
        usage: usage(300, 40),
      },
      fakeReply.text("Oslo is 3°C and vm-7 is deleted.", { usage: usage(500, 20) }),
    );
    const counts: Record<string, number> = {};
    const checkpoints: string[] = [];
    const first = await runAgent({
      model: model(),
      tools: tools(counts),
      run,
      hooks: { ...approvalHook, onCheckpoint: async (s) => void checkpoints.push(JSON.stringify(s)) },
      messages: [{ role: "user", content: "Weather in Oslo, then delete vm-7 in staging" }],
    });
    if (first.status !== "suspended") throw new Error("expected a suspension");
    expect(first.suspensions).toEqual([
      {
        call: {
          type: "tool_use",
          id: "toolu_d",
          name: "delete_resource",
          input: { resource: "vm-7", env: "staging" },
        },
        reason: "delete_resource needs one approval",
        data: { approvalId: "ap-toolu_d" },
      },
    ]);
    expect(counts).toEqual({ get_weather: 1 });
    expect(fake.requests).toHaveLength(1);
    // The last checkpoint is the suspended state.
    expect(JSON.parse(checkpoints.at(-1) as string)).toEqual(first.state);

    // Another process: only JSON crosses over; new model client, new registry.
    const stored = JSON.stringify(first.state);
    approvals.set("ap-toolu_d", "approved");
    const resumed = completed(
      await runAgent({
        model: model(),
        tools: tools(counts),
        run,
        hooks: approvalHook,
        state: JSON.parse(stored) as AgentState,
      }),
    );
    expect(resumed.text).toBe("Oslo is 3°C and vm-7 is deleted.");
    expect(counts).toEqual({ get_weather: 1, delete_resource: 1 });
    expect(resumed.steps).toBe(2);
    expect(resumed.usage).toEqual<Usage>({
      input: 800,
      output: 60,
      cacheCreationInput: 0,
      cacheReadInput: 0,
    });
    expect(fake.requests).toHaveLength(2);
    expect(wireResults(1)).toEqual([
      { type: "tool_result", tool_use_id: "toolu_w", content: '{"city":"Oslo","tempC":3}' },
      { type: "tool_result", tool_use_id: "toolu_d", content: "deleted vm-7 in staging" },
    ]);
  });

  it("surfaces a provider error as a typed error after telling onModelCallError", async () => {
    fake.fail(fakeReply.rateLimited({ retryAfter: "3" }));
    const seen: unknown[] = [];
    const error = await runAgent({
      model: model(),
      tools: tools({}),
      run,
      hooks: { onModelCallError: async ({ error: e }) => void seen.push(e) },
      messages: [{ role: "user", content: "hi" }],
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "PROVIDER_RATE_LIMITED", retryAfterMs: 3000 });
    expect(seen).toEqual([error]);
  });
});
