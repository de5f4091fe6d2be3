import { SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { DelayedError } from "bullmq";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import type { ModelRequest, ModelResponse, ToolUseBlock, Usage } from "@agentry/llm";
import { linkFrom, serializeSpanContext, withAgentSpan, type AgentRun } from "./agent-span.js";
import { startTelemetry, type Telemetry } from "./start-telemetry.js";
import { createTracingHooks } from "./tracing-hooks.js";

const exporter = new InMemorySpanExporter();
let telemetry: Telemetry;
beforeAll(() => {
  telemetry = startTelemetry({ serviceName: "tracing-test", exporter });
});
afterAll(() => telemetry.shutdown());
beforeEach(() => exporter.reset());

const run: AgentRun = {
  taskId: "task-1",
  tenant: "acme",
  userId: "u-1",
  sessionId: "s-1",
  agentName: "assistant",
};
const request: ModelRequest = {
  model: "claude-sonnet-4-5",
  messages: [{ role: "user", content: "hi" }],
  maxTokens: 1024,
};
const usage: Usage = { input: 100, output: 20, cacheCreationInput: 30, cacheReadInput: 50 };
const response = (stopReason: ModelResponse["stopReason"] = "tool_use"): ModelResponse => ({
  id: "msg_1",
  model: "claude-sonnet-4-5-20250929",
  content: [{ type: "text", text: "ok" }],
  stopReason,
  usage,
});
const toolCall = (id: string, name = "get_weather"): ToolUseBlock => ({
  type: "tool_use",
  id,
  name,
  input: { city: "Paris" },
});

const spans: () => ReadableSpan[] = () => exporter.getFinishedSpans();
/** Waits for every ended span to reach the exporter. */
async function flushed(): Promise<void> {
  await telemetry.forceFlush();
}
const byName = (name: string): ReadableSpan => {
  const found = spans().filter((s) => s.name === name);
  expect(found, `one span named ${name}`).toHaveLength(1);
  return found[0]!;
};

describe("withAgentSpan + createTracingHooks", () => {
  it("nests chat and execute_tool spans under invoke_agent with GenAI attributes and cost", async () => {
    const hooks = createTracingHooks({
      tracer: telemetry.tracer,
      pricing: (_model, u) => u.input * 3 + u.output * 15,
    });
    await withAgentSpan(run, async () => {
      const info = { run, step: 1, request };
      await hooks.beforeModelCall(info);
      // Another hook clamped max_tokens: the span reports what was sent.
      await hooks.afterModelCall({
        ...info,
        request: { ...request, maxTokens: 512 },
        response: response(),
        durationMs: 850,
      });
      const call = toolCall("toolu_1");
      expect(await hooks.beforeToolCall({ run, step: 1, call })).toEqual({ type: "allow" });
      await hooks.afterToolCall({
        run,
        step: 1,
        call,
        result: { type: "tool_result", toolUseId: call.id, content: "sunny" },
        durationMs: 5,
        decision: { type: "allow" },
      });
    });
    await flushed();

    const agent = byName("invoke_agent assistant");
    expect(agent.attributes).toMatchObject({
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.agent.name": "assistant",
      "gen_ai.conversation.id": "s-1",
      "agentry.tenant": "acme",
      "agentry.user_id": "u-1",
      "agentry.session_id": "s-1",
      "agentry.task_id": "task-1",
    });

    const chat = byName("chat claude-sonnet-4-5");
    expect(chat.parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
    expect(chat.spanContext().traceId).toBe(agent.spanContext().traceId);
    expect(chat.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "anthropic",
      "gen_ai.system": "anthropic",
      "gen_ai.request.model": "claude-sonnet-4-5",
      "gen_ai.request.max_tokens": 512,
      "gen_ai.response.model": "claude-sonnet-4-5-20250929",
      "gen_ai.response.id": "msg_1",
      "gen_ai.response.finish_reasons": ["tool_use"],
      // Input per the conventions includes cache reads and writes: 100 + 30 + 50.
      "gen_ai.usage.input_tokens": 180,
      "gen_ai.usage.output_tokens": 20,
      "gen_ai.usage.cache_creation.input_tokens": 30,
      "gen_ai.usage.cache_read.input_tokens": 50,
      "agentry.cost_micro_usd": 100 * 3 + 20 * 15,
      "agentry.step": 1,
    });

    const tool = byName("execute_tool get_weather");
    expect(tool.parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
    expect(tool.attributes).toMatchObject({
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "get_weather",
      "gen_ai.tool.call.id": "toolu_1",
      "agentry.tool.decision": "allow",
    });
  });

  it("keeps concurrent tool calls apart, each with its own decision", async () => {
    const hooks = createTracingHooks({ tracer: telemetry.tracer });
    await withAgentSpan(run, async () => {
      const a = toolCall("toolu_a", "get_weather");
      const b = toolCall("toolu_b", "delete_resource");
      await Promise.all([
        hooks.beforeToolCall({ run, step: 2, call: a }),
        hooks.beforeToolCall({ run, step: 2, call: b }),
      ]);
      // They finish in the opposite order.
      await hooks.afterToolCall({
        run,
        step: 2,
        call: b,
        result: { type: "tool_result", toolUseId: b.id, content: "denied", isError: true },
        durationMs: 1,
        decision: { type: "deny", reason: "production deletes are not allowed", policy: "no-prod-delete" },
      });
      await hooks.afterToolCall({
        run,
        step: 2,
        call: a,
        result: { type: "tool_result", toolUseId: a.id, content: "rain" },
        durationMs: 1,
        decision: { type: "allow" },
      });
    });
    await flushed();
    const weather = byName("execute_tool get_weather");
    const del = byName("execute_tool delete_resource");
    expect(weather.attributes["gen_ai.tool.call.id"]).toBe("toolu_a");
    expect(weather.attributes["agentry.tool.decision"]).toBe("allow");
    expect(del.attributes["gen_ai.tool.call.id"]).toBe("toolu_b");
    expect(del.attributes).toMatchObject({
      "agentry.tool.decision": "deny",
      "agentry.tool.deny_policy": "no-prod-delete",
    });
    // A denial is a decision, not a failed span.
    expect(del.status.code).not.toBe(SpanStatusCode.ERROR);
  });

  it("ends a suspended tool call's span when the run returns, and links the resumed run to the first trace", async () => {
    const hooks = createTracingHooks({ tracer: telemetry.tracer });
    const call = toolCall("toolu_approve", "delete_resource");
    const stored = await withAgentSpan(run, async (span) => {
      await hooks.beforeToolCall({ run, step: 1, call });
      // The loop returns `suspended`: no afterToolCall. The checkpoint keeps the span context.
      return serializeSpanContext(span);
    });
    await flushed();
    expect(stored).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const first = byName("invoke_agent assistant");
    const suspended = byName("execute_tool delete_resource");
    expect(suspended.attributes["agentry.tool.decision"]).toBe("suspend");
    exporter.reset();

    // Resumed later (another worker, maybe another trace).
    await withAgentSpan(
      run,
      async () => {
        await hooks.beforeToolCall({
          run,
          step: 1,
          call,
          previousSuspension: { reason: "approval", data: { approvalId: "ap-1" } },
        });
        await hooks.afterToolCall({
          run,
          step: 1,
          call,
          previousSuspension: { reason: "approval" },
          result: { type: "tool_result", toolUseId: call.id, content: "deleted" },
          durationMs: 2,
          decision: { type: "allow" },
        });
      },
      { links: [linkFrom(stored)] },
    );
    await flushed();
    const resumed = byName("invoke_agent assistant");
    expect(resumed.links).toHaveLength(1);
    expect(resumed.links[0]!.context.traceId).toBe(first.spanContext().traceId);
    expect(resumed.links[0]!.context.spanId).toBe(first.spanContext().spanId);
    expect(resumed.links[0]!.attributes).toEqual({ "agentry.link.reason": "resumed" });
    expect(byName("execute_tool delete_resource").attributes).toMatchObject({
      "agentry.tool.decision": "allow",
      "agentry.tool.previous_suspension": "approval",
    });
  });

  it("marks a failed model call and a failed run as errors with the AgentryError code", async () => {
    const hooks = createTracingHooks({ tracer: telemetry.tracer });
    const error = new AgentryError("PROVIDER_OVERLOADED", "overloaded");
    await expect(
      withAgentSpan(run, async () => {
        const info = { run, step: 1, request };
        await hooks.beforeModelCall(info);
        await hooks.onModelCallError({ ...info, error, sent: true });
        throw error;
      }),
    ).rejects.toBe(error);
    await flushed();
    for (const span of [byName("chat claude-sonnet-4-5"), byName("invoke_agent assistant")]) {
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes["error.type"]).toBe("PROVIDER_OVERLOADED");
      expect(span.events.some((e) => e.name === "exception")).toBe(true);
    }
  });

  it("treats BullMQ's DelayedError as control flow, not as a failure", async () => {
    await expect(
      withAgentSpan(run, async () => {
        throw new DelayedError();
      }),
    ).rejects.toBeInstanceOf(DelayedError);
    const agent = byName("invoke_agent assistant");
    expect(agent.status.code).not.toBe(SpanStatusCode.ERROR);
    await flushed();
    expect(agent.attributes["agentry.control_flow"]).toBe("DelayedError");
  });

  it("never fails the run when pricing throws, and closes a model span left open by an abandoned attempt", async () => {
    const hooks = createTracingHooks({
      tracer: telemetry.tracer,
      pricing: () => {
        throw new AgentryError("UNKNOWN_MODEL", "no price");
      },
    });
    await withAgentSpan(run, async () => {
      const info = { run, step: 3, request };
      await hooks.beforeModelCall(info);
      await hooks.afterModelCall({ ...info, response: response("end_turn"), durationMs: 10 });
      // A later model call opened but never finished (another hook threw after it): ended with the run.
      await hooks.beforeModelCall({ run, step: 4, request });
    });
    await flushed();
    const chats = spans().filter((s) => s.name === "chat claude-sonnet-4-5");
    expect(chats).toHaveLength(2);
    const finished = chats.find((s) => s.attributes["agentry.step"] === 3)!;
    expect(finished.attributes["gen_ai.response.finish_reasons"]).toEqual(["end_turn"]);
    expect(finished.attributes["agentry.cost_micro_usd"]).toBeUndefined();
    expect(chats.find((s) => s.attributes["agentry.step"] === 4)!.attributes["agentry.unfinished"]).toBe(
      true,
    );
  });

  it("serialises nothing and links nothing when there is no real span context", () => {
    expect(linkFrom(undefined)).toBeUndefined();
    expect(linkFrom("garbage")).toBeUndefined();
    expect(linkFrom(`00-${"0".repeat(32)}-${"1".repeat(16)}-01`)).toBeUndefined();
    expect(
      serializeSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 }),
    ).toBeUndefined();
  });
});
