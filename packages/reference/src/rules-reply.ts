import {
  answerByRules,
  type ContentBlock,
  type Message,
  type ModelRequest,
  type ScriptedRule,
  type ToolDefinition,
} from "@agentry/llm";
import type {
  FakeContentBlock,
  FakeMessageReply,
  RecordedRequest,
  WireBlock,
  WireRequest,
} from "@agentry/testkit";
import { demoRules } from "./demo-rules.js";

function wireText(content: string | WireBlock[] | undefined): string {
  if (content === undefined) return "";
  if (typeof content === "string") return content;
  return content.map((b) => b.text ?? "").join("\n");
}

function fromWireBlock(block: WireBlock): ContentBlock[] {
  switch (block.type) {
    case "text":
      return [{ type: "text", text: block.text ?? "" }];
    case "tool_use":
      return [{ type: "tool_use", id: block.id ?? "", name: block.name ?? "", input: block.input }];
    case "tool_result":
      return [
        {
          type: "tool_result",
          toolUseId: block.tool_use_id ?? "",
          content: wireText(block.content),
          ...(block.is_error === true ? { isError: true } : {}),
        },
      ];
    default:
      return [];
  }
}

/** A Messages API request body as the {@link ModelRequest} the `ScriptedModel`'s rules read. */
function fromWire(body: WireRequest): ModelRequest {
  const messages: Message[] = (body.messages ?? []).map((m) => ({
    role: m.role === "assistant" ? "assistant" : "user",
    content: typeof m.content === "string" ? m.content : m.content.flatMap(fromWireBlock),
  }));
  const tools: ToolDefinition[] = (body.tools ?? []).map((t) => ({
    name: t.name,
    description: t.description ?? "",
    inputSchema:
      typeof t.input_schema === "object" && t.input_schema !== null
        ? (t.input_schema as Record<string, unknown>)
        : {},
  }));
  const system = wireText(body.system);
  return { ...(system.length > 0 ? { system } : {}), messages, tools, maxTokens: 1024 };
}

/**
 * A handler for the fake Messages API server (`startFakeAnthropic({ handler })`) that answers
 * by a `ScriptedModel` rule table: the request is read as a {@link ModelRequest}, the first rule
 * with a reply answers (else the scripted model's fallback), and the reply goes back on the wire.
 * Tool-use ids are left to the fake, which derives them from the request, so a retry gets the
 * same id.
 */
export function rulesReply(rules: readonly ScriptedRule[]): (request: RecordedRequest) => FakeMessageReply {
  return (request) => {
    const reply = answerByRules(fromWire(request.body), rules);
    const content: FakeContentBlock[] =
      typeof reply.content === "string"
        ? [{ type: "text", text: reply.content }]
        : reply.content.map((b) =>
            b.type === "text"
              ? { type: "text", text: b.text }
              : {
                  type: "tool_use",
                  ...(b.id === undefined ? {} : { id: b.id }),
                  name: b.name,
                  input: b.input,
                },
          );
    return { content, ...(reply.stopReason === undefined ? {} : { stopReason: reply.stopReason }) };
  };
}

/** The fake server's answers to the reference tools' prompts: {@link rulesReply} of {@link demoRules}. */
export const referenceReply = rulesReply(demoRules);
