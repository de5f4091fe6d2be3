import { describe, expect, it } from "vitest";
import {
  ScriptedModel,
  estimateInputTokens,
  type ModelRequest,
  type ToolDefinition,
  type ToolUseBlock,
} from "@agentry/llm";
import { demoRules } from "./demo-rules.js";

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

function onlyToolUse(content: unknown[]): ToolUseBlock {
  expect(content).toHaveLength(1);
  const block = content[0] as ToolUseBlock;
  expect(block.type).toBe("tool_use");
  return block;
}

describe("the demo rules on the ScriptedModel", () => {
  const demo = new ScriptedModel({ rules: demoRules });

  it("answers a weather question with get_weather {city}", async () => {
    const r = await demo.generate(ask("What's the weather in Paris today?"));
    expect(r.stopReason).toBe("tool_use");
    expect(onlyToolUse(r.content)).toMatchObject({ name: "get_weather", input: { city: "Paris" } });
    const r2 = await demo.generate(ask("temperature forecast for New York?"));
    expect(onlyToolUse(r2.content).input).toEqual({ city: "New York" });
  });

  it("answers delete X in development|staging|production with delete_resource {resource, env}, nothing for another environment", async () => {
    expect(onlyToolUse((await demo.generate(ask("Please delete db-1 in staging"))).content)).toMatchObject({
      name: "delete_resource",
      input: { resource: "db-1", env: "staging" },
    });
    expect(
      onlyToolUse((await demo.generate(ask("delete cache-cluster in production"))).content).input,
    ).toEqual({
      resource: "cache-cluster",
      env: "production",
    });
    expect(onlyToolUse((await demo.generate(ask("delete tmp-1 in development"))).content).input).toEqual({
      resource: "tmp-1",
      env: "development",
    });
    expect((await demo.generate(ask("delete tmp-1 in qa"))).stopReason).toBe("end_turn");
  });

  it("answers remember and recall", async () => {
    expect(
      onlyToolUse((await demo.generate(ask("Remember that my favourite colour is teal"))).content),
    ).toMatchObject({
      name: "remember",
      input: { text: "my favourite colour is teal" },
    });
    expect(
      onlyToolUse((await demo.generate(ask("What do you remember about my favourite colour?"))).content),
    ).toMatchObject({
      name: "recall",
      input: { query: "my favourite colour" },
    });
  });

  it("summarises a tool result, including an error result such as a denial", async () => {
    const call = await demo.generate(ask("delete db-1 in production"));
    const use = onlyToolUse(call.content);
    const ok = await demo.generate(
      ask("", {
        messages: [
          { role: "user", content: "delete db-1 in production" },
          { role: "assistant", content: call.content },
          {
            role: "user",
            content: [{ type: "tool_result", toolUseId: use.id, content: '{"deleted":"db-1"}' }],
          },
        ],
      }),
    );
    expect(ok.stopReason).toBe("end_turn");
    expect(ok.content).toEqual([{ type: "text", text: 'delete_resource returned: {"deleted":"db-1"}' }]);
    const sentence = (content: string) =>
      demo.generate(
        ask("", {
          messages: [
            { role: "user", content: "delete db-1 in staging" },
            { role: "assistant", content: call.content },
            { role: "user", content: [{ type: "tool_result", toolUseId: use.id, content }] },
          ],
        }),
      );
    expect((await sentence('{"deleted":"db-1","env":"staging","simulated":true}')).content).toEqual([
      { type: "text", text: "Done: db-1 was deleted in staging (simulated)." },
    ]);
    expect((await sentence('{"city":"Paris","temperatureC":18,"conditions":"clear"}')).content).toEqual([
      { type: "text", text: "In Paris it is 18°C and clear." },
    ]);
    const denied = await demo.generate(
      ask("", {
        messages: [
          { role: "user", content: "delete db-1 in production" },
          { role: "assistant", content: call.content },
          {
            role: "user",
            content: [
              {
                type: "tool_result",
                toolUseId: use.id,
                content: "Denied by policy no-prod-delete",
                isError: true,
              },
            ],
          },
        ],
      }),
    );
    expect(denied.content).toEqual([
      { type: "text", text: "I could not complete delete_resource: Denied by policy no-prod-delete" },
    ]);
  });

  it("answers anything else, or a tool that is not offered, with short text", async () => {
    const r = await demo.generate(ask("Tell me a joke"));
    expect(r.stopReason).toBe("end_turn");
    expect(r.content[0]?.type).toBe("text");
    const noTools = await demo.generate(ask("What's the weather in Paris?", { tools: [] }));
    expect(noTools.stopReason).toBe("end_turn");
  });

  it("derives tool_use ids from the conversation, so a retry gets the same id", async () => {
    const a = onlyToolUse((await demo.generate(ask("What's the weather in Rome?"))).content);
    const b = onlyToolUse(
      (await new ScriptedModel({ rules: demoRules }).generate(ask("What's the weather in Rome?"))).content,
    );
    const c = onlyToolUse((await demo.generate(ask("What's the weather in Oslo?"))).content);
    expect(a.id).toBe(b.id);
    expect(a.id).not.toBe(c.id);
  });

  it("reports plausible usage: input by the estimate rule, output from the answer length", async () => {
    const request = ask("Tell me a joke");
    const r = await demo.generate(request);
    expect(r.usage.input).toBe(estimateInputTokens(request));
    const text = (r.content[0] as { text: string }).text;
    expect(r.usage.output).toBe(Math.ceil(text.length / 4));
    expect(r.model).toBe("claude-sonnet-4-6");
  });
});
