import { createHash } from "node:crypto";
import type { WireBlock, WireRequest } from "./tokens.js";

/**
 * The fake server's default answer when its script is empty: a small deterministic rule,
 * enough for an agent loop to make progress against it.
 *
 * - the last user message carries a `tool_result` → a short text answer quoting it;
 * - tools are offered and the last user text names one (by keyword) → a `tool_use` of it;
 * - otherwise → a short text answer.
 *
 * Tool ids are derived from a hash of the conversation, so a retried request gets the same id.
 */
export interface DemoReply {
  content: WireBlock[];
  stopReason: "end_turn" | "tool_use";
}

/** Keywords that select a tool, checked in this order (so `recall` wins over `remember`). */
const TOOL_KEYWORDS: readonly (readonly [string, RegExp])[] = [
  ["recall", /\b(what do you remember|do you remember|what did i tell you|recall)\b/i],
  ["get_weather", /\b(weather|temperature|forecast)\b/i],
  ["delete_resource", /\b(delete|remove)\b/i],
  ["remember", /\b(remember|note that|memori[sz]e)\b/i],
];

function lastUserMessage(request: WireRequest): { role: string; content: string | WireBlock[] } | undefined {
  const messages = request.messages ?? [];
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const m = messages[i];
    if (m?.role === "user") return m;
  }
  return undefined;
}

function textOf(content: string | WireBlock[]): string {
  if (typeof content === "string") return content;
  return content
    .filter((b) => b.type === "text")
    .map((b) => b.text ?? "")
    .join("\n");
}

function toolResultText(block: WireBlock): string {
  if (typeof block.content === "string") return block.content;
  return (block.content ?? []).map((b) => b.text ?? "").join("\n");
}

function conversationId(request: WireRequest, salt: string): string {
  const hash = createHash("sha256")
    .update(JSON.stringify({ system: request.system ?? null, messages: request.messages ?? [] }))
    .update(salt)
    .digest("hex");
  return `toolu_fake_${hash.slice(0, 24)}`;
}

function extractInput(text: string, schema: unknown): Record<string, unknown> {
  const lower = text.toLowerCase();
  const props =
    typeof schema === "object" && schema !== null && "properties" in schema
      ? Object.keys((schema as { properties: Record<string, unknown> }).properties)
      : [];
  const input: Record<string, unknown> = {};
  for (const prop of props) {
    switch (prop) {
      case "city":
      case "location": {
        const m = /\b(?:in|for|at)\s+([\p{L}][\p{L}\p{M}'.-]*(?:\s+[\p{Lu}][\p{L}\p{M}'.-]*)*)/u.exec(text);
        input[prop] = m?.[1]?.replace(/[.?!]+$/, "") ?? "Paris";
        break;
      }
      case "env":
      case "environment":
        input[prop] = /\bprod(uction)?\b/.test(lower)
          ? "production"
          : /\bstag(ing|e)\b/.test(lower)
            ? "staging"
            : "development";
        break;
      case "resource": {
        const m = /\b(?:delete|remove)\s+(?:the\s+)?(\S+)/i.exec(text);
        input[prop] = m?.[1] ?? "resource";
        break;
      }
      case "text": {
        const m = /\bremember(?:\s+that)?\s+([\s\S]+)/i.exec(text);
        input[prop] = (m?.[1] ?? text).trim();
        break;
      }
      case "query": {
        const m = /\b(?:remember|recall)\s+(?:about\s+)?([\s\S]+)/i.exec(text);
        input[prop] = (m?.[1] ?? text).replace(/[?.!]+$/, "").trim() || text;
        break;
      }
      default:
        break;
    }
  }
  if (Object.keys(input).length === 0 && props.length > 0 && props[0] !== undefined) input[props[0]] = text;
  return input;
}

/** Computes the demo answer for a request (see the module comment). */
export function demoReply(request: WireRequest): DemoReply {
  const last = lastUserMessage(request);
  if (last && typeof last.content !== "string") {
    const result = last.content.find((b) => b.type === "tool_result");
    if (result) {
      const body = toolResultText(result).slice(0, 200);
      const text = result.is_error
        ? `The action could not be completed: ${body}`
        : `Here is what I found: ${body}`;
      return { content: [{ type: "text", text }], stopReason: "end_turn" };
    }
  }
  const prompt = last ? textOf(last.content) : "";
  const offered = request.tools ?? [];
  for (const [name, pattern] of TOOL_KEYWORDS) {
    const tool = offered.find((t) => t.name === name);
    if (tool && pattern.test(prompt)) {
      const input = extractInput(prompt, tool.input_schema);
      return {
        content: [{ type: "tool_use", id: conversationId(request, name), name, input }],
        stopReason: "tool_use",
      };
    }
  }
  const named = offered.find(
    (t) =>
      prompt.toLowerCase().includes(t.name.toLowerCase().replaceAll("_", " ")) || prompt.includes(t.name),
  );
  if (named) {
    const input = extractInput(prompt, named.input_schema);
    return {
      content: [{ type: "tool_use", id: conversationId(request, named.name), name: named.name, input }],
      stopReason: "tool_use",
    };
  }
  const snippet = prompt.length > 80 ? `${prompt.slice(0, 80)}…` : prompt;
  return { content: [{ type: "text", text: `You said: ${snippet}` }], stopReason: "end_turn" };
}
