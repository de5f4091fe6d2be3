import { AgentryError } from "@agentry/core";
import { describe, expect, it } from "vitest";
import { estimateInputTokens } from "../estimate/estimate-tokens.js";
import {
  responseText,
  type ModelRequest,
  type TextDelta,
  type ToolDefinition,
  type ToolUseBlock,
} from "../model/types.js";
import { ScriptedModel, scriptedError, scriptedText, scriptedToolUse } from "./scripted-model.js";
import { scriptedTurn, type ScriptedRule } from "./rules.js";

const tool = (name: string, props: string[]): ToolDefinition => ({
  name,
  description: name,
  inputSchema: {
    type: "object",
    properties: Object.fromEntries(props.map((p) => [p, { type: "string" }])),
    required: props,
  },
});
const TOOLS = [
  tool("get_weather", ["city"]),
  tool("delete_resource", ["resource", "env"]),
  tool("remember", ["text"]),
  tool("recall", ["query"]),
];

const ask = (prompt: string, extra: Partial<ModelRequest> = {}): ModelRequest => ({
  system: "You are the Agentry reference assistant.",
  messages: [{ role: "user", content: prompt }],
  tools: TOOLS,
  maxTokens: 512,
  ...extra,
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

function onlyToolUse(content: unknown[]): ToolUseBlock {
  expect(content).toHaveLength(1);
  const block = content[0] as ToolUseBlock;
  expect(block.type).toBe("tool_use");
  return block;
}

describe("ScriptedModel replay", () => {
  it("replays text and tool_use replies in order, records requests, and fills in usage", async () => {
    const llm = new ScriptedModel({
      script: [
        scriptedToolUse(
          "get_weather",
          { city: "Oslo" },
          { id: "toolu_x", usage: { input: 100, output: 20, cacheReadInput: 50 } },
        ),
        scriptedText("Cold."),
      ],
    });
    const first = await llm.generate(ask("weather?"));
    expect(first.content).toEqual([
      { type: "tool_use", id: "toolu_x", name: "get_weather", input: { city: "Oslo" } },
    ]);
    expect(first.stopReason).toBe("tool_use");
    expect(first.usage).toEqual({ input: 100, output: 20, cacheCreationInput: 0, cacheReadInput: 50 });
    const second = await llm.generate(ask("and then?"));
    expect(second.content).toEqual([{ type: "text", text: "Cold." }]);
    expect(second.stopReason).toBe("end_turn");
    expect(second.usage.input).toBe(estimateInputTokens(ask("and then?")));
    expect(second.usage.output).toBeGreaterThan(0);
    expect(llm.requests.map((r) => r.messages[0]?.content)).toEqual(["weather?", "and then?"]);
    expect(llm.provider).toBe("scripted");
  });

  it("throws INTERNAL once a script is used up, or falls back to the rules when asked", async () => {
    const strict = new ScriptedModel({ script: [scriptedText("one")] });
    await strict.generate(ask("a"));
    expect((await failure(strict.generate(ask("b")))).code).toBe("INTERNAL");
    const lenient = new ScriptedModel({ script: [], whenExhausted: "rules" });
    expect((await lenient.generate(ask("hello"))).stopReason).toBe("end_turn");
  });

  it("throws scripted errors and runs scripted functions of the request", async () => {
    const llm = new ScriptedModel({
      script: [
        scriptedError(new AgentryError("PROVIDER_RATE_LIMITED", "slow down", { retryAfterMs: 1000 })),
        (request, call) => scriptedText(`call ${call}: ${String(request.messages.length)} message(s)`),
      ],
    });
    const err = await failure(llm.generate(ask("x")));
    expect(err.code).toBe("PROVIDER_RATE_LIMITED");
    expect(err.retryAfterMs).toBe(1000);
    expect((await llm.generate(ask("y"))).content).toEqual([{ type: "text", text: "call 1: 1 message(s)" }]);
  });

  it("gives scripted tool calls without an id a deterministic one", async () => {
    const a = await new ScriptedModel({ script: [scriptedToolUse("recall", { query: "q" })] }).generate(
      ask("same"),
    );
    const b = await new ScriptedModel({ script: [scriptedToolUse("recall", { query: "q" })] }).generate(
      ask("same"),
    );
    expect(onlyToolUse(a.content).id).toBe(onlyToolUse(b.content).id);
    expect(onlyToolUse(a.content).id).toMatch(/^toolu_/);
  });

  it("honours abort, before and during its simulated latency", async () => {
    const llm = new ScriptedModel({ latencyMs: 10_000 });
    const controller = new AbortController();
    const pending = llm.generate(ask("hi", { signal: controller.signal }));
    controller.abort();
    expect((await failure(pending)).code).toBe("CANCELLED");
    expect((await failure(llm.generate(ask("hi", { signal: controller.signal })))).code).toBe("CANCELLED");
  });

  it("streams each answer's text word by word, like a provider, before generate resolves", async () => {
    const llm = new ScriptedModel({
      script: [
        {
          content: [
            { type: "text", text: "Two blocks of text," },
            { type: "text", text: "then a tool." },
            { type: "tool_use", name: "recall", input: { query: "q" } },
          ],
        },
        scriptedText("A plain answer in five words."),
      ],
    });
    for (const expected of [4 + 1 + 3, 6]) {
      const deltas: TextDelta[] = [];
      const afterResolve: TextDelta[] = [];
      let resolved = false;
      const response = await llm
        .generate(ask("hi", { onTextDelta: (d) => (resolved ? afterResolve : deltas).push(d) }))
        .finally(() => (resolved = true));
      expect(afterResolve).toEqual([]);
      expect(deltas).toHaveLength(expected);
      expect(deltas.map((d) => d.text).join("")).toBe(responseText(response.content));
      expect(
        deltas.every((d, i) => d.offset === deltas.slice(0, i).reduce((n, x) => n + x.text.length, 0)),
      ).toBe(true);
    }
  });

  it("paces its pieces with deltaDelayMs, and an abort between pieces is CANCELLED", async () => {
    const llm = new ScriptedModel({
      deltaDelayMs: 30,
      script: [scriptedText("one two three four"), scriptedText("never finished at all")],
    });
    const at: number[] = [];
    await llm.generate(ask("hi", { onTextDelta: () => at.push(performance.now()) }));
    expect(at).toHaveLength(4);
    expect(at.slice(1).every((t, i) => t - (at[i] as number) >= 29)).toBe(true);

    const controller = new AbortController();
    const seen: string[] = [];
    const err = await failure(
      llm.generate(
        ask("hi", {
          signal: controller.signal,
          onTextDelta: (d) => {
            seen.push(d.text);
            controller.abort();
          },
        }),
      ),
    );
    expect(err.code).toBe("CANCELLED");
    expect(seen).toEqual(["never "]);
  });
});

describe("ScriptedModel rule table", () => {
  const weatherRule: ScriptedRule = (request) => {
    const city = /weather in (\w+)/i.exec(scriptedTurn(request).prompt)?.[1];
    return city ? scriptedToolUse("get_weather", { city }) : undefined;
  };

  it("answers with the first rule that has a reply, in table order", async () => {
    const first: ScriptedRule = (request) =>
      scriptedTurn(request).prompt.includes("Oslo") ? scriptedText("first") : undefined;
    const model = new ScriptedModel({ rules: [first, weatherRule, () => scriptedText("last")] });
    expect((await model.generate(ask("weather in Oslo"))).content).toEqual([{ type: "text", text: "first" }]);
    const use = onlyToolUse((await model.generate(ask("weather in Rome"))).content);
    expect(use).toMatchObject({ name: "get_weather", input: { city: "Rome" } });
    expect((await model.generate(ask("Tell me a joke"))).content).toEqual([{ type: "text", text: "last" }]);
  });

  it("knows no tool without rules: a plain text answer, a greeting for an empty prompt", async () => {
    const model = new ScriptedModel();
    const r = await model.generate(ask("What's the weather in Paris?"));
    expect(r.stopReason).toBe("end_turn");
    expect(r.content).toEqual([
      { type: "text", text: expect.stringContaining("What's the weather in Paris?") as string },
    ]);
    expect((await model.generate(ask(""))).content).toEqual([
      { type: "text", text: "Hello! How can I help?" },
    ]);
  });

  it("summarises tool results when no rule answers, naming the tool, errors included", async () => {
    const model = new ScriptedModel({ rules: [weatherRule] });
    const call = await model.generate(ask("weather in Paris"));
    const use = onlyToolUse(call.content);
    const after = (content: string, isError?: boolean) =>
      model.generate(
        ask("", {
          messages: [
            { role: "user", content: "weather in Paris" },
            { role: "assistant", content: call.content },
            {
              role: "user",
              content: [{ type: "tool_result", toolUseId: use.id, content, ...(isError ? { isError } : {}) }],
            },
          ],
        }),
      );
    const ok = await after('{"city":"Paris"}');
    expect(ok.stopReason).toBe("end_turn");
    expect(ok.content).toEqual([{ type: "text", text: 'get_weather returned: {"city":"Paris"}' }]);
    expect((await after("Denied by policy p", true)).content).toEqual([
      { type: "text", text: "I could not complete get_weather: Denied by policy p" },
    ]);
  });

  it("derives tool_use ids from the conversation, so a retry gets the same id", async () => {
    const a = onlyToolUse(
      (await new ScriptedModel({ rules: [weatherRule] }).generate(ask("weather in Rome"))).content,
    );
    const b = onlyToolUse(
      (await new ScriptedModel({ rules: [weatherRule] }).generate(ask("weather in Rome"))).content,
    );
    const c = onlyToolUse(
      (await new ScriptedModel({ rules: [weatherRule] }).generate(ask("weather in Oslo"))).content,
    );
    expect(a.id).toBe(b.id);
    expect(a.id).not.toBe(c.id);
  });

  it("reports plausible usage: input by the estimate rule, output from the answer length", async () => {
    const request = ask("Tell me a joke");
    const r = await new ScriptedModel().generate(request);
    expect(r.usage.input).toBe(estimateInputTokens(request));
    const text = (r.content[0] as { text: string }).text;
    expect(r.usage.output).toBe(Math.ceil(text.length / 4));
    expect(r.model).toBe("claude-sonnet-4-6");
  });

  it("keeps only the latest requests, so a long-running worker does not grow", async () => {
    const model = new ScriptedModel({ maxRecordedRequests: 3 });
    for (let i = 0; i < 5; i++)
      await model.generate({ messages: [{ role: "user", content: `hello ${i}` }], maxTokens: 10 });
    expect(model.requests.map((r) => r.messages[0]?.content)).toEqual(["hello 2", "hello 3", "hello 4"]);
  });
});
