import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  composeHooks,
  defineTool,
  runAgent,
  ToolRegistry,
  type AgentHooks,
  type AgentState,
} from "@agentry/agent";
import { createLanguageModel } from "@agentry/llm";
import { fakeReply, startFakeAnthropic, type FakeAnthropic } from "@agentry/testkit";
import { createMetrics } from "../metrics/metrics.js";
import { createMetricsHooks } from "../metrics/metrics-hooks.js";
import { linkFrom, serializeSpanContext, setAgentUsage, withAgentSpan } from "./agent-span.js";
import { startTelemetry, type Telemetry } from "./start-telemetry.js";
import { createTracingHooks } from "./tracing-hooks.js";

const exporter = new InMemorySpanExporter();
let telemetry: Telemetry;
let fake: FakeAnthropic;
beforeAll(async () => {
  telemetry = startTelemetry({ serviceName: "loop-test", exporter });
  fake = await startFakeAnthropic();
});
afterAll(async () => {
  await fake.close();
  await telemetry.shutdown();
});

const tools = new ToolRegistry().register(
  defineTool({
    name: "get_weather",
    description: "Weather",
    input: z.object({ city: z.string() }),
    handler: ({ city }) => `sunny in ${city}`,
  }),
  defineTool({
    name: "delete_resource",
    description: "Delete",
    input: z.object({ resource: z.string() }),
    handler: () => "deleted",
  }),
);

// Governance stand-in: delete_resource waits for an approval that the test grants on resume.
let approved = false;
const approvals: AgentHooks = {
  async beforeToolCall(info) {
    if (info.call.name !== "delete_resource" || approved) return { type: "allow" };
    return { type: "suspend", reason: "approval", data: { approvalId: "ap-1" } };
  },
};

describe("tracing and metrics hooks in the real agent loop", () => {
  it("traces a run that suspends for approval and its resumed run, linked, and counts it", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const hooks = composeHooks(
      approvals,
      createTracingHooks({ tracer: telemetry.tracer }),
      createMetricsHooks(metrics),
    );
    const run = { taskId: "t-loop", tenant: "acme", userId: "u", sessionId: "s" };
    // The real Anthropic adapter and SDK against the fake Messages API, with scripted replies.
    const model = createLanguageModel({ llm: "anthropic", apiKey: "test-key", baseURL: fake.url });
    fake.enqueue(
      {
        content: [
          { type: "tool_use", id: "toolu_w", name: "get_weather", input: { city: "Paris" } },
          { type: "tool_use", id: "toolu_d", name: "delete_resource", input: { resource: "db" } },
        ],
        usage: { input_tokens: 120, output_tokens: 30 },
      },
      fakeReply.text("All done.", { usage: { input_tokens: 200, output_tokens: 5 } }),
    );

    const first = await withAgentSpan(run, async (span) => {
      const result = await runAgent({
        model,
        tools,
        run,
        hooks,
        messages: [{ role: "user", content: "weather, then delete db" }],
      });
      return { result, traceParent: serializeSpanContext(span) };
    });
    expect(first.result.status).toBe("suspended");

    approved = true;
    const state = JSON.parse(JSON.stringify(first.result.state)) as AgentState;
    // The attempt that completes the task names provider and model and carries the task's totals.
    const second = await withAgentSpan(
      { ...run, providerName: model.provider, requestModel: model.defaultModel },
      async (span) => {
        const result = await runAgent({ model, tools, run, hooks, state });
        setAgentUsage(span, result.usage, 1234);
        return result;
      },
      { links: [linkFrom(first.traceParent)] },
    );
    expect(second.status).toBe("completed");
    expect(fake.pending()).toBe(0);
    await telemetry.forceFlush();

    const spans = exporter.getFinishedSpans();
    const agents = spans.filter((s) => s.name === "invoke_agent agentry");
    expect(agents).toHaveLength(2);
    const [a1, a2] = agents as [(typeof agents)[number], (typeof agents)[number]];
    // Agentry's own spans; the SDK adds its own `anthropic.messages.create` span to the trace.
    const childrenOf = (parent: typeof a1) =>
      spans
        .filter(
          (s) =>
            s.instrumentationScope.name === "agentry" &&
            s.parentSpanContext?.spanId === parent.spanContext().spanId,
        )
        .map((s) => `${s.name}:${String(s.attributes["agentry.tool.decision"] ?? "")}`)
        .sort();

    expect(childrenOf(a1)).toEqual(
      [
        `chat ${model.defaultModel}:`,
        "execute_tool delete_resource:suspend",
        "execute_tool get_weather:allow",
      ].sort(),
    );
    expect(childrenOf(a2)).toEqual([`chat ${model.defaultModel}:`, "execute_tool delete_resource:allow"]);
    expect(a2.links.map((l) => l.context.spanId)).toEqual([a1.spanContext().spanId]);
    // Each run's one provider call, as the real SDK traced it, is in that run's trace.
    const sdkCalls = spans.filter((s) => s.name === "anthropic.messages.create");
    expect(sdkCalls.map((s) => s.spanContext().traceId)).toEqual([
      a1.spanContext().traceId,
      a2.spanContext().traceId,
    ]);
    // invoke_agent of the completing attempt: provider, model, and usage summed over every chat
    // span of the task (both attempts), by the same names the chat spans use.
    const chats = spans.filter((s) => s.name.startsWith("chat "));
    const total = (attr: string) => chats.reduce((sum, s) => sum + Number(s.attributes[attr]), 0);
    expect(a2.attributes).toMatchObject({
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.provider.name": "anthropic",
      "gen_ai.request.model": model.defaultModel,
      "gen_ai.usage.input_tokens": total("gen_ai.usage.input_tokens"),
      "gen_ai.usage.output_tokens": total("gen_ai.usage.output_tokens"),
      "gen_ai.usage.cache_read.input_tokens": 0,
      "agentry.cost_micro_usd": 1234,
    });
    expect(a2.attributes["gen_ai.usage.input_tokens"]).toBe(320);
    expect(a2.attributes["gen_ai.usage.output_tokens"]).toBe(35);

    const text = await metrics.metricsText();
    expect(text).toContain('agentry_tokens_total{tenant="acme",kind="input"} 320');
    expect(text).toContain('agentry_tool_calls_total{tool="get_weather",decision="allow"} 1');
    expect(text).toContain('agentry_tool_calls_total{tool="delete_resource",decision="allow"} 1');
  });
});
