// The fake Messages API driven by the demo rules answers, over the real SDK, as the
// ScriptedModel driven by the same rules does: one rule table, two transports.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AnthropicModel,
  ScriptedModel,
  type ModelRequest,
  type ToolDefinition,
  type ToolUseBlock,
} from "@agentry/llm";
import { startFakeAnthropic, type FakeAnthropic } from "@agentry/testkit";
import { demoRules } from "./demo-rules.js";
import { referenceReply } from "./rules-reply.js";

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
const ask = (prompt: string): ModelRequest => ({
  system: "You are the Agentry reference assistant.",
  messages: [{ role: "user", content: prompt }],
  tools: TOOLS,
  maxTokens: 512,
});

let fake: FakeAnthropic;
let wire: AnthropicModel;
const scripted = new ScriptedModel({ rules: demoRules });
beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: referenceReply });
  wire = new AnthropicModel({ apiKey: "test-key", baseURL: fake.url, defaultModel: "claude-sonnet-4-6" });
});
afterAll(async () => {
  await fake.close();
});

const withoutIds = (content: unknown[]) => content.map((b) => ({ ...(b as object), id: undefined }));

describe("referenceReply on the fake Messages API", () => {
  it.each([
    "What's the weather in Paris?",
    "delete db-7 in staging",
    "delete tmp-1 in development",
    "Remember that my favourite colour is teal",
    "What do you remember about my favourite colour?",
    "Tell me a joke",
  ])("answers %j as the ScriptedModel with the demo rules does", async (prompt) => {
    const [overWire, offline] = await Promise.all([
      wire.generate(ask(prompt)),
      scripted.generate(ask(prompt)),
    ]);
    expect(overWire.stopReason).toBe(offline.stopReason);
    expect(withoutIds(overWire.content)).toEqual(withoutIds(offline.content));
  });

  it("answers a tool result with the same sentence, and a retried request gets the same tool_use id", async () => {
    const first = await wire.generate(ask("What's the weather in Oslo?"));
    const again = await wire.generate(ask("What's the weather in Oslo?"));
    const use = first.content[0] as ToolUseBlock;
    expect(use).toMatchObject({ type: "tool_use", name: "get_weather", input: { city: "Oslo" } });
    expect((again.content[0] as ToolUseBlock).id).toBe(use.id);
    const after: ModelRequest = {
      ...ask("What's the weather in Oslo?"),
      messages: [
        { role: "user", content: "What's the weather in Oslo?" },
        { role: "assistant", content: first.content },
        {
          role: "user",
          content: [
            {
              type: "tool_result",
              toolUseId: use.id,
              content: '{"city":"Oslo","temperatureC":3,"conditions":"windy"}',
            },
          ],
        },
      ],
    };
    const [overWire, offline] = await Promise.all([wire.generate(after), scripted.generate(after)]);
    expect(overWire.content).toEqual([{ type: "text", text: "In Oslo it is 3°C and windy." }]);
    expect(overWire.content).toEqual(offline.content);
  });
});
