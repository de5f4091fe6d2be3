import { AgentryError, isAgentryError } from "@agentry/core";
import type {
  LanguageModel,
  Message,
  ModelRequest,
  ModelResponse,
  ToolResultBlock,
  ToolUseBlock,
  Usage,
} from "@agentry/llm";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ToolRegistry } from "../tools/registry.js";
import { defineTool } from "../tools/tool.js";
import { composeHooks, type AgentHooks, type ToolCallInfo } from "./hooks.js";
import { InMemoryToolJournal } from "./journal.js";
import { ScriptedModel, scriptedText, scriptedToolUse } from "@agentry/llm";
import { INTERRUPTED_TOOL_MESSAGE, runAgent, type AgentResult, type StepTextDelta } from "./run-agent.js";
import type { AgentState } from "./state.js";

// A tiny scripted LanguageModel: answers each call with the next response of its list.
type Scripted = Pick<ModelResponse, "content"> & Partial<ModelResponse>;
function scripted(responses: Scripted[]): LanguageModel & { requests: ModelRequest[] } {
  const requests: ModelRequest[] = [];
  return {
    provider: "scripted",
    defaultModel: "scripted-1",
    requests,
    async generate(request) {
      requests.push(structuredClone({ ...request, signal: undefined }));
      const next = responses[requests.length - 1];
      if (next === undefined)
        throw new AgentryError("INTERNAL", `script ran out after ${responses.length} responses`);
      const hasTools = next.content.some((b) => b.type === "tool_use");
      return {
        id: `msg_${requests.length}`,
        model: "scripted-1",
        stopReason: hasTools ? "tool_use" : "end_turn",
        usage: { input: 100, output: 10, cacheCreationInput: 0, cacheReadInput: 0 },
        ...next,
      };
    },
  };
}
const use = (id: string, name: string, input: unknown): ToolUseBlock => ({
  type: "tool_use",
  id,
  name,
  input,
});
const text = (t: string) => ({ type: "text" as const, text: t });
const run = { taskId: "task-1", tenant: "acme", userId: "alice", sessionId: "sess-1" };
const ask = (content: string): Message[] => [{ role: "user", content }];

const bump = (counts: Record<string, number>, name: string): number =>
  (counts[name] = (counts[name] ?? 0) + 1);

/** Tools that count how often each handler ran. */
function countingTools(counts: Record<string, number>): ToolRegistry {
  const bump = (name: string) => (counts[name] = (counts[name] ?? 0) + 1);
  return new ToolRegistry().register(
    defineTool({
      name: "get_weather",
      description: "Weather for a city",
      input: z.object({ city: z.string() }),
      handler: ({ city }) => {
        bump("get_weather");
        return { city, tempC: city === "Oslo" ? 3 : 21 };
      },
    }),
    defineTool({
      name: "delete_resource",
      description: "Delete a resource",
      input: z.object({ resource: z.string(), env: z.string() }),
      handler: ({ resource }) => {
        bump("delete_resource");
        return `deleted ${resource}`;
      },
    }),
  );
}
const toolResults = (message: Message | undefined): ToolResultBlock[] =>
  Array.isArray(message?.content)
    ? message.content.filter((b): b is ToolResultBlock => b.type === "tool_result")
    : [];
const assertCompleted = (result: AgentResult): Extract<AgentResult, { status: "completed" }> => {
  if (result.status !== "completed") throw new Error(`expected completed, got ${result.status}`);
  return result;
};
const assertSuspended = (result: AgentResult): Extract<AgentResult, { status: "suspended" }> => {
  if (result.status !== "suspended") throw new Error(`expected suspended, got ${result.status}`);
  return result;
};

describe("runAgent", () => {
  it("with its own modelSignal, a provider call in flight when the run is stopped finishes and its usage reaches afterModelCall; the run stops after it", async () => {
    const stop = new AbortController();
    const seen: { signal?: AbortSignal; settled: number } = { settled: 0 };
    const model: LanguageModel = {
      provider: "scripted",
      defaultModel: "scripted-1",
      async generate(request) {
        seen.signal = request.signal;
        stop.abort(new AgentryError("LOCK_LOST", "the attempt lost its lock")); // mid-call
        await new Promise((r) => setTimeout(r, 20));
        return {
          id: "msg_1",
          model: "scripted-1",
          stopReason: "tool_use",
          content: [use("t1", "get_weather", { city: "Oslo" })],
          usage: { input: 100, output: 10, cacheCreationInput: 0, cacheReadInput: 0 },
        };
      },
    };
    const err = await runAgent({
      model,
      tools: countingTools({}),
      messages: ask("weather in Oslo?"),
      run,
      signal: stop.signal,
      modelSignal: new AbortController().signal,
      hooks: {
        afterModelCall: async ({ response }) =>
          void (seen.settled += response.usage.input + response.usage.output),
      },
    }).catch((e: unknown) => e);
    expect(seen.signal?.aborted).toBe(false);
    expect(seen.settled).toBe(110);
    expect(isAgentryError(err)).toBe(true);
  });

  it("runs a multi-step tool conversation and sums usage over the steps", async () => {
    const counts: Record<string, number> = {};
    const model = scripted([
      {
        content: [text("Let me check."), use("c1", "get_weather", { city: "Oslo" })],
        usage: { input: 50, output: 7, cacheCreationInput: 20, cacheReadInput: 0 },
      },
      {
        content: [use("c2", "get_weather", { city: "Rome" })],
        usage: { input: 80, output: 9, cacheCreationInput: 0, cacheReadInput: 20 },
      },
      {
        content: [text("Oslo is 3°C, Rome 21°C.")],
        usage: { input: 120, output: 12, cacheCreationInput: 0, cacheReadInput: 20 },
      },
    ]);
    const result = assertCompleted(
      await runAgent({
        model,
        tools: countingTools(counts),
        run,
        system: "Be brief.",
        messages: ask("Weather in Oslo and Rome?"),
      }),
    );
    expect(result.text).toBe("Oslo is 3°C, Rome 21°C.");
    expect(result.steps).toBe(3);
    expect(result.usage).toEqual<Usage>({
      input: 250,
      output: 28,
      cacheCreationInput: 20,
      cacheReadInput: 40,
    });
    expect(counts).toEqual({ get_weather: 2 });

    // The model saw the tools, the system prompt and each tool result.
    expect(model.requests[0]?.system).toBe("Be brief.");
    expect(model.requests[0]?.tools?.map((t) => t.name)).toEqual(["get_weather", "delete_resource"]);
    expect(model.requests[0]?.maxTokens).toBe(1024);
    expect(toolResults(model.requests[1]?.messages.at(-1))).toEqual([
      { type: "tool_result", toolUseId: "c1", content: '{"city":"Oslo","tempC":3}' },
    ]);
    // newMessages: everything after the input, ready to append to the session.
    expect(result.newMessages.map((m) => m.role)).toEqual([
      "assistant",
      "user",
      "assistant",
      "user",
      "assistant",
    ]);
    expect(result.state.messages).toHaveLength(6);
    expect(result.state.pending).toEqual([]);
  });

  it("hands each model call's text to onTextDelta tagged with its step, the step count going on across a resume", async () => {
    const model = new ScriptedModel({
      script: [
        scriptedToolUse("get_weather", { city: "Oslo" }, { id: "c1", text: "Let me check Oslo." }),
        scriptedToolUse(
          "delete_resource",
          { resource: "db", env: "staging" },
          { id: "c2", text: "Now the cleanup." },
        ),
        scriptedText("Done: Oslo is 3°C and db is gone."),
      ],
    });
    const deltas: StepTextDelta[] = [];
    const suspendDelete: AgentHooks = {
      beforeToolCall: async ({ call }) =>
        call.name === "delete_resource" ? { type: "suspend", reason: "approval" } : { type: "allow" },
    };
    const first = await runAgent({
      model,
      tools: countingTools({}),
      run,
      messages: ask("Weather, then clean up"),
      hooks: suspendDelete,
      onTextDelta: (d) => deltas.push(d),
    });
    expect(first.status).toBe("suspended");
    const resumed = assertCompleted(
      await runAgent({
        model,
        tools: countingTools({}),
        run,
        state: JSON.parse(JSON.stringify(first.state)) as AgentState,
        onTextDelta: (d) => deltas.push(d),
      }),
    );
    const textOf = (step: number) =>
      deltas
        .filter((d) => d.step === step)
        .map((d) => d.text)
        .join("");
    expect([...new Set(deltas.map((d) => d.step))]).toEqual([1, 2, 3]);
    expect([textOf(1), textOf(2), textOf(3)]).toEqual([
      "Let me check Oslo.",
      "Now the cleanup.",
      resumed.text,
    ]);
    // Offsets count within a step.
    expect(deltas.filter((d) => d.offset === 0).map((d) => d.step)).toEqual([1, 2, 3]);
  });

  it("runs the tool calls of one turn concurrently and returns results in call order in one message", async () => {
    const started: string[] = [];
    let release!: () => void;
    const bothStarted = new Promise<void>((resolve) => (release = resolve));
    const tools = new ToolRegistry().register(
      defineTool({
        name: "slow_first",
        description: "x",
        input: z.object({}),
        timeoutMs: 5_000,
        handler: async () => {
          started.push("slow_first");
          if (started.length === 2) release();
          await bothStarted; // would deadlock (and time out) if the calls ran one after another
          await new Promise((r) => setTimeout(r, 10));
          return "first";
        },
      }),
      defineTool({
        name: "fast_second",
        description: "x",
        input: z.object({}),
        timeoutMs: 5_000,
        handler: async () => {
          started.push("fast_second");
          if (started.length === 2) release();
          await bothStarted;
          return "second";
        },
      }),
    );
    const model = scripted([
      { content: [use("a", "slow_first", {}), use("b", "fast_second", {})] },
      { content: [text("done")] },
    ]);
    const result = assertCompleted(await runAgent({ model, tools, run, messages: ask("go") }));
    expect(result.text).toBe("done");
    const sent = model.requests[1]?.messages.at(-1);
    expect(sent?.role).toBe("user");
    expect(toolResults(sent)).toEqual([
      { type: "tool_result", toolUseId: "a", content: "first" },
      { type: "tool_result", toolUseId: "b", content: "second" },
    ]);
  });

  it("gives the model an error result for each tool failure mode and keeps going", async () => {
    const tools = new ToolRegistry().register(
      defineTool({
        name: "strict",
        description: "x",
        input: z.object({ n: z.number().int() }),
        handler: ({ n }) => n,
      }),
      defineTool({
        name: "thrower",
        description: "x",
        input: z.object({}),
        handler: () => {
          throw new Error("database unreachable");
        },
      }),
      defineTool({
        name: "sleeper",
        description: "x",
        input: z.object({}),
        timeoutMs: 15,
        handler: () => new Promise<never>(() => undefined),
      }),
    );
    const model = scripted([
      {
        content: [
          use("1", "strict", { n: "seven" }),
          use("2", "nope", {}),
          use("3", "thrower", {}),
          use("4", "sleeper", {}),
          use("5", "strict", "{not json"),
        ],
      },
      { content: [text("Sorry, the tools failed.")] },
    ]);
    const result = assertCompleted(await runAgent({ model, tools, run, messages: ask("try") }));
    expect(result.text).toBe("Sorry, the tools failed.");
    const results = toolResults(model.requests[1]?.messages.at(-1));
    expect(results.map((r) => [r.toolUseId, r.isError])).toEqual([
      ["1", true],
      ["2", true],
      ["3", true],
      ["4", true],
      ["5", true],
    ]);
    expect(results[0]?.content).toMatch(/Invalid input for tool "strict":\n- n: /);
    expect(results[1]?.content).toBe('Unknown tool "nope". Available tools: strict, thrower, sleeper.');
    expect(results[2]?.content).toBe('Tool "thrower" failed: database unreachable');
    expect(results[3]?.content).toContain('Tool "sleeper" timed out after 15 ms');
    expect(results[4]?.content).toContain("not valid JSON");
  });

  it("denies a call through a hook without running it and tells the model which policy", async () => {
    const counts: Record<string, number> = {};
    const decisions: string[] = [];
    const hooks: AgentHooks = {
      beforeToolCall: async ({ call }) =>
        call.name === "delete_resource"
          ? { type: "deny", reason: "production deletes are not allowed", policy: "no-prod-delete" }
          : { type: "allow" },
      afterToolCall: async ({ call, decision, result }) =>
        void decisions.push(`${call.name}:${decision.type}:${result.isError === true}`),
    };
    const model = scripted([
      {
        content: [
          use("d", "delete_resource", { resource: "db", env: "production" }),
          use("w", "get_weather", { city: "Rome" }),
        ],
      },
      { content: [text("I may not delete that.")] },
    ]);
    assertCompleted(
      await runAgent({ model, tools: countingTools(counts), run, hooks, messages: ask("delete db") }),
    );
    expect(counts).toEqual({ get_weather: 1 });
    expect(toolResults(model.requests[1]?.messages.at(-1))[0]).toEqual({
      type: "tool_result",
      toolUseId: "d",
      content: "Denied by policy no-prod-delete: production deletes are not allowed",
      isError: true,
    });
    expect(decisions.sort()).toEqual(["delete_resource:deny:true", "get_weather:allow:false"]);
  });

  it("checks the input before any hook judges the call, and tells hooks which tools are destructive", async () => {
    const counts: Record<string, number> = {};
    const judged: { name: string; destructive: boolean | undefined }[] = [];
    const after: string[] = [];
    const tools = countingTools(counts).register(
      defineTool({
        name: "reset_cluster",
        description: "Wipe a cluster",
        input: z.object({ env: z.enum(["staging", "production"]) }),
        destructive: true,
        handler: () => bump(counts, "reset_cluster"),
      }),
    );
    const hooks: AgentHooks = {
      beforeToolCall: async ({ call, destructive }) => {
        judged.push({ name: call.name, destructive });
        return { type: "suspend", reason: "needs approval" };
      },
      afterToolCall: async ({ call, decision, result }) =>
        void after.push(`${call.name}:${decision.type}:${result.isError === true}`),
    };
    const model = scripted([
      {
        content: [
          use("bad", "reset_cluster", { env: "prod" }),
          use("unknown", "launch_rocket", {}),
          use("ok", "reset_cluster", { env: "staging" }),
        ],
      },
    ]);
    const result = assertSuspended(await runAgent({ model, tools, run, hooks, messages: ask("reset") }));
    // Only the call the tool would accept is judged (and suspended for approval).
    expect(judged).toEqual([{ name: "reset_cluster", destructive: true }]);
    expect(result.suspensions.map((s) => s.call.id)).toEqual(["ok"]);
    expect(counts).toEqual({});
    const refused = result.state.pending.find((p) => p.call.id === "bad")?.result;
    expect(refused).toMatchObject({ isError: true });
    expect(refused?.content).toMatch(/^Invalid input for tool "reset_cluster":\n- env: /);
    expect(after.sort()).toEqual(["launch_rocket:allow:true", "reset_cluster:allow:true"]);
  });

  it("suspends, survives a JSON round trip and resumes in a fresh loop without re-running any tool", async () => {
    const counts: Record<string, number> = {};
    const seen: ToolCallInfo[] = [];
    let approved = false;
    const approvals: AgentHooks = {
      // Charges one micro-USD per input token: the run carries the sum across the resume.
      afterModelCall: async ({ response }) => ({ costMicroUsd: response.usage.input }),
      beforeToolCall: async (info) => {
        seen.push(info);
        if (info.call.name !== "delete_resource") return { type: "allow" };
        if (info.previousSuspension === undefined)
          return { type: "suspend", reason: "needs approval", data: { approvalId: "ap-1" } };
        return approved
          ? { type: "allow" }
          : { type: "suspend", reason: "still waiting", data: info.previousSuspension.data ?? {} };
      },
    };
    const first = scripted([
      {
        content: [
          text("Checking and deleting."),
          use("w", "get_weather", { city: "Oslo" }),
          use("d", "delete_resource", { resource: "vm-7", env: "staging" }),
        ],
      },
    ]);
    const suspended = assertSuspended(
      await runAgent({
        model: first,
        tools: countingTools(counts),
        run,
        hooks: approvals,
        messages: ask("weather, then delete vm-7"),
      }),
    );
    expect(suspended.suspensions).toEqual([
      {
        call: use("d", "delete_resource", { resource: "vm-7", env: "staging" }),
        reason: "needs approval",
        data: { approvalId: "ap-1" },
      },
    ]);
    expect(counts).toEqual({ get_weather: 1 });
    expect(suspended.steps).toBe(1);
    expect(suspended.usage.input).toBe(100);
    expect(suspended.costMicroUsd).toBe(100);

    // Across processes the state is only ever text.
    const stored = JSON.stringify(suspended.state);
    const restored = JSON.parse(stored) as AgentState;
    expect(restored).toEqual(suspended.state);
    expect(restored.pending[0]?.result?.toolUseId).toBe("w");
    expect(restored.pending[1]?.suspension).toEqual({
      reason: "needs approval",
      data: { approvalId: "ap-1" },
    });

    // Still pending: a resume suspends again and runs nothing.
    const idle = scripted([]);
    const again = assertSuspended(
      await runAgent({ model: idle, tools: countingTools(counts), run, hooks: approvals, state: restored }),
    );
    expect(again.suspensions[0]?.reason).toBe("still waiting");
    expect(idle.requests).toHaveLength(0);
    expect(counts).toEqual({ get_weather: 1 });

    // Approved: a fresh loop with a fresh registry finishes the task.
    approved = true;
    const second = scripted([{ content: [text("Oslo is 3°C and vm-7 is gone.")] }]);
    const done = assertCompleted(
      await runAgent({
        model: second,
        tools: countingTools(counts),
        run,
        hooks: approvals,
        state: JSON.parse(JSON.stringify(again.state)) as AgentState,
      }),
    );
    expect(counts).toEqual({ get_weather: 1, delete_resource: 1 });
    expect(done.text).toBe("Oslo is 3°C and vm-7 is gone.");
    expect(done.steps).toBe(2);
    expect(done.usage.input).toBe(200);
    expect(done.costMicroUsd).toBe(200);
    expect(toolResults(second.requests[0]?.messages.at(-1)).map((r) => [r.toolUseId, r.content])).toEqual([
      ["w", '{"city":"Oslo","tempC":3}'],
      ["d", "deleted vm-7"],
    ]);
    // The weather call was never re-evaluated; the delete saw its earlier suspension.
    expect(seen.filter((i) => i.call.id === "w")).toHaveLength(1);
    expect(seen.filter((i) => i.call.id === "d").map((i) => i.previousSuspension?.reason)).toEqual([
      undefined,
      "needs approval",
      "still waiting",
    ]);
    // Session history: the run's messages after the original input, across the suspension.
    expect(done.newMessages.map((m) => m.role)).toEqual(["assistant", "user", "assistant"]);
  });

  it("retries from its last checkpoint without re-running finished tool calls", async () => {
    const counts: Record<string, number> = {};
    const checkpoints: string[] = [];
    const hooks: AgentHooks = { onCheckpoint: async (state) => void checkpoints.push(JSON.stringify(state)) };
    const crashing: LanguageModel = {
      provider: "scripted",
      defaultModel: "s",
      generate: (() => {
        const inner = scripted([
          {
            content: [use("w1", "get_weather", { city: "Oslo" }), use("w2", "get_weather", { city: "Rome" })],
          },
        ]);
        return async (req: ModelRequest) => {
          if (inner.requests.length === 1) throw new AgentryError("PROVIDER_OVERLOADED", "overloaded");
          return inner.generate(req);
        };
      })(),
    };
    await expect(
      runAgent({ model: crashing, tools: countingTools(counts), run, hooks, messages: ask("weather") }),
    ).rejects.toMatchObject({
      code: "PROVIDER_OVERLOADED",
    });
    expect(counts).toEqual({ get_weather: 2 });
    // Checkpoints: after the model response and after each tool result (the last one holds both).
    expect(checkpoints.length).toBe(3);
    const last = JSON.parse(checkpoints.at(-1) as string) as AgentState;
    expect(last.pending.map((p) => p.result?.toolUseId)).toEqual(["w1", "w2"]);

    const retry = scripted([{ content: [text("Oslo 3°C, Rome 21°C")] }]);
    const done = assertCompleted(
      await runAgent({ model: retry, tools: countingTools(counts), run, state: last }),
    );
    expect(done.text).toBe("Oslo 3°C, Rome 21°C");
    expect(counts).toEqual({ get_weather: 2 });
  });

  it("with a journal, never re-runs a call that was interrupted mid-handler unless the tool is idempotent", async () => {
    const journal = new InMemoryToolJournal();
    const counts: Record<string, number> = {};
    const tools = countingTools(counts).register(
      defineTool({
        name: "read_file",
        description: "x",
        input: z.object({}),
        idempotent: true,
        handler: () => {
          counts.read_file = (counts.read_file ?? 0) + 1;
          return "contents";
        },
      }),
    );
    const del = use("d", "delete_resource", { resource: "vm", env: "dev" });
    const read = use("r", "read_file", {});
    const weather = use("w", "get_weather", { city: "Rome" });
    // A worker claimed these calls and died before recording a result.
    await journal.begin(run, del);
    await journal.begin(run, read);
    // This one finished in another process before its checkpoint was written.
    await journal.begin(run, weather);
    await journal.complete(run, weather, {
      type: "tool_result",
      toolUseId: "w",
      content: "from the journal",
    });

    const model = scripted([{ content: [del, read, weather] }, { content: [text("ok")] }]);
    assertCompleted(await runAgent({ model, tools, run, journal, messages: ask("go") }));
    expect(counts).toEqual({ read_file: 1 });
    expect(toolResults(model.requests[1]?.messages.at(-1))).toEqual([
      { type: "tool_result", toolUseId: "d", content: INTERRUPTED_TOOL_MESSAGE, isError: true },
      { type: "tool_result", toolUseId: "r", content: "contents" },
      { type: "tool_result", toolUseId: "w", content: "from the journal" },
    ]);
    // A fresh call is claimed and completed.
    expect(await journal.begin(run, read)).toEqual({
      status: "done",
      result: { type: "tool_result", toolUseId: "r", content: "contents" },
    });
  });

  it("fails with a typed STEP_LIMIT when the model keeps calling tools", async () => {
    const counts: Record<string, number> = {};
    const loop = Array.from({ length: 5 }, (_, i) => ({
      content: [use(`c${i}`, "get_weather", { city: "Oslo" })],
    }));
    const model = scripted(loop);
    let saved: AgentState | undefined;
    const error = await runAgent({
      model,
      tools: countingTools(counts),
      run,
      maxSteps: 3,
      hooks: { onCheckpoint: async (s) => void (saved = s) },
      messages: ask("loop"),
    }).catch((e: unknown) => e);
    expect(isAgentryError(error, "STEP_LIMIT")).toBe(true);
    expect((error as AgentryError).details).toMatchObject({
      maxSteps: 3,
      steps: 3,
      usage: { input: 300, output: 30 },
    });
    expect(model.requests).toHaveLength(3);
    // The third call's tool request is never run: nothing could read its result.
    expect(counts).toEqual({ get_weather: 2 });

    // The checkpoint holds that request; a larger limit continues from it.
    expect(saved?.pending.map((p) => p.call.id)).toEqual(["c2"]);
    const more = scripted([{ content: [text("finally")] }]);
    const done = assertCompleted(
      await runAgent({
        model: more,
        tools: countingTools(counts),
        run,
        maxSteps: 4,
        state: saved as AgentState,
      }),
    );
    expect(done.text).toBe("finally");
    expect(done.steps).toBe(4);
    expect(counts).toEqual({ get_weather: 3 });
  });

  it("completes when stopWhen says so", async () => {
    const counts: Record<string, number> = {};
    const model = scripted([
      { content: [text("Looking."), use("c", "get_weather", { city: "Oslo" })] },
      { content: [text("never asked")] },
    ]);
    const result = assertCompleted(
      await runAgent({
        model,
        tools: countingTools(counts),
        run,
        messages: ask("x"),
        stopWhen: (s) => s.messages.some((m) => toolResults(m).length > 0),
      }),
    );
    expect(result.text).toBe("Looking.");
    expect(model.requests).toHaveLength(1);
  });

  it("lets beforeModelCall clamp maxTokens and stop the run before any provider call", async () => {
    const model = scripted([{ content: [text("hi")] }, { content: [text("hi")] }]);
    const hooks = composeHooks(
      { beforeModelCall: async () => ({ maxTokens: 64 }) },
      { beforeModelCall: async () => ({ maxTokens: 200 }) },
    );
    const seen: number[] = [];
    await runAgent({
      model,
      tools: new ToolRegistry(),
      run,
      hooks: composeHooks(hooks, { afterModelCall: async (i) => void seen.push(i.request.maxTokens) }),
      messages: ask("x"),
    });
    expect(model.requests[0]?.maxTokens).toBe(64);
    expect(seen).toEqual([64]);

    const broke = scripted([{ content: [text("unreachable")] }]);
    const budget: AgentHooks = {
      beforeModelCall: async () => {
        throw new AgentryError("BUDGET_EXCEEDED", "tenant acme is out of budget");
      },
    };
    // Hooks are told the call was not sent, so one that reserved or opened something for it can let it go.
    const told: { code: unknown; sent: boolean }[] = [];
    const listener: AgentHooks = {
      onModelCallError: async ({ error, sent }) =>
        void told.push({ code: (error as AgentryError).code, sent }),
    };
    await expect(
      runAgent({
        model: broke,
        tools: new ToolRegistry(),
        run,
        hooks: composeHooks(listener, budget),
        messages: ask("x"),
      }),
    ).rejects.toMatchObject({ code: "BUDGET_EXCEEDED" });
    expect(broke.requests).toHaveLength(0);
    expect(told).toEqual([{ code: "BUDGET_EXCEEDED", sent: false }]);
  });

  it("reports model errors to onModelCallError and rethrows them", async () => {
    const errors: unknown[] = [];
    const model: LanguageModel = {
      provider: "scripted",
      defaultModel: "s",
      generate: async () => {
        throw new AgentryError("PROVIDER_RATE_LIMITED", "slow down", { retryAfterMs: 2000 });
      },
    };
    await expect(
      runAgent({
        model,
        tools: new ToolRegistry(),
        run,
        hooks: { onModelCallError: async ({ error, sent }) => void errors.push({ error, sent }) },
        messages: ask("x"),
      }),
    ).rejects.toMatchObject({ code: "PROVIDER_RATE_LIMITED", retryAfterMs: 2000 });
    expect(errors).toMatchObject([{ error: { code: "PROVIDER_RATE_LIMITED" }, sent: true }]);
  });

  it("fails the run when a checkpoint cannot be stored", async () => {
    const model = scripted([{ content: [text("hi")] }]);
    const hooks: AgentHooks = {
      onCheckpoint: async () => {
        throw new AgentryError("REDIS_UNAVAILABLE", "redis down");
      },
    };
    await expect(
      runAgent({ model, tools: new ToolRegistry(), run, hooks, messages: ask("x") }),
    ).rejects.toMatchObject({ code: "REDIS_UNAVAILABLE" });
  });

  it("drops a truncated tool_use when the model stopped for another reason", async () => {
    const counts: Record<string, number> = {};
    const model = scripted([
      { content: [text("Partial answer"), use("c", "get_weather", { ci: "" })], stopReason: "max_tokens" },
    ]);
    const result = assertCompleted(
      await runAgent({ model, tools: countingTools(counts), run, messages: ask("x") }),
    );
    expect(result.text).toBe("Partial answer");
    expect(result.newMessages).toEqual([{ role: "assistant", content: [text("Partial answer")] }]);
    expect(counts).toEqual({});
  });

  it("stops with CANCELLED when the signal is aborted", async () => {
    const controller = new AbortController();
    const tools = new ToolRegistry().register(
      defineTool({
        name: "wait",
        description: "x",
        input: z.object({}),
        handler: () => {
          controller.abort();
          return "late";
        },
      }),
    );
    const journal = new InMemoryToolJournal();
    const model = scripted([{ content: [use("c", "wait", {})] }, { content: [text("never")] }]);
    const error = await runAgent({
      model,
      tools,
      run,
      journal,
      signal: controller.signal,
      messages: ask("x"),
    }).catch((e: unknown) => e);
    expect(isAgentryError(error, "CANCELLED")).toBe(true);
    expect(model.requests).toHaveLength(1);
    // The outcome of the cancelled handler is unknown: a retry must not blindly re-run it.
    expect(await journal.begin(run, use("c", "wait", {}))).toEqual({ status: "interrupted" });
  });

  it("returns a completed state as is instead of calling the model again", async () => {
    const model = scripted([{ content: [text("answer")] }]);
    const first = assertCompleted(
      await runAgent({ model, tools: new ToolRegistry(), run, messages: ask("x") }),
    );
    const again = assertCompleted(
      await runAgent({ model, tools: new ToolRegistry(), run, state: first.state }),
    );
    expect(again.text).toBe("answer");
    expect(model.requests).toHaveLength(1);
  });

  describe("bad input", () => {
    const model = scripted([]);
    const tools = new ToolRegistry();
    const code = async (p: Promise<unknown>) => ((await p.catch((e: unknown) => e)) as AgentryError).code;

    it("refuses empty messages, a missing user message and an empty user message", async () => {
      expect(await code(runAgent({ model, tools, run, messages: [] }))).toBe("INVALID_INPUT");
      expect(await code(runAgent({ model, tools, run }))).toBe("INVALID_INPUT");
      expect(
        await code(runAgent({ model, tools, run, messages: [{ role: "assistant", content: "hi" }] })),
      ).toBe("INVALID_INPUT");
      expect(await code(runAgent({ model, tools, run, messages: ask("   ") }))).toBe("INVALID_INPUT");
      expect(
        await code(
          runAgent({ model, tools, run, messages: [{ role: "system", content: "x" } as unknown as Message] }),
        ),
      ).toBe("INVALID_INPUT");
    });

    it("refuses an oversized message with its size", async () => {
      const error = (await runAgent({
        model,
        tools,
        run,
        maxInputBytes: 1000,
        messages: ask("x".repeat(2000)),
      }).catch((e: unknown) => e)) as AgentryError;
      expect(error.code).toBe("INVALID_INPUT");
      expect(error.details).toEqual({ bytes: 2002, maxInputBytes: 1000 });
      expect(await code(runAgent({ model, tools, run, messages: ask("é".repeat(140 * 1024)) }))).toBe(
        "INVALID_INPUT",
      );
    });

    it("refuses a malformed state and bad options", async () => {
      const error = (await runAgent({
        model,
        tools,
        run,
        state: { version: 2 } as unknown as AgentState,
      }).catch((e: unknown) => e)) as AgentryError;
      expect(error.code).toBe("INVALID_INPUT");
      expect(error.message).toContain("version");
      expect(await code(runAgent({ model, tools, run, maxSteps: 0, messages: ask("x") }))).toBe(
        "INVALID_CONFIG",
      );
    });
  });
});
