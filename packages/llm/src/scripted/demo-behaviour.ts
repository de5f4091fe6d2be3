import { createHash } from "node:crypto";
import type {
  ContentBlock,
  Message,
  ModelRequest,
  StopReason,
  TextBlock,
  ToolUseBlock,
} from "../model/types.js";

/** What the demo behaviour decides for one request. */
export interface DemoDecision {
  content: (TextBlock | ToolUseBlock)[];
  stopReason: StopReason;
}

/** A stable id derived from the conversation, so a retried call gets the same tool_use id. */
export function conversationHash(request: Pick<ModelRequest, "system" | "messages">, salt = ""): string {
  return createHash("sha256")
    .update(JSON.stringify({ system: request.system ?? null, messages: request.messages }))
    .update("\u0000")
    .update(salt)
    .digest("hex");
}

function blocks(message: Message): ContentBlock[] {
  return typeof message.content === "string" ? [{ type: "text", text: message.content }] : message.content;
}

function lastUser(request: ModelRequest): Message | undefined {
  for (let i = request.messages.length - 1; i >= 0; i -= 1) {
    const m = request.messages[i];
    if (m?.role === "user") return m;
  }
  return undefined;
}

function toolNameFor(request: ModelRequest, toolUseId: string): string {
  for (const message of request.messages) {
    for (const block of blocks(message)) {
      if (block.type === "tool_use" && block.id === toolUseId) return block.name;
    }
  }
  return "the tool";
}

function clip(text: string, max = 160): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

const CITY = /\b(?:in|for|at)\s+([\p{Lu}][\p{L}\p{M}'.-]*(?:[\s-]+[\p{Lu}][\p{L}\p{M}'.-]*)*)/u;
const WEATHER = /\b(weather|temperature|forecast)\b/i;
const DELETE = /\bdelete\s+(?:the\s+)?([\w./:-]+)\s+(?:in|on|from)\s+(?:the\s+)?(staging|production)\b/i;
const RECALL =
  /\b(?:what\s+do\s+you\s+(?:remember|recall)|do\s+you\s+remember|recall)\b(?:\s+(?:about|of|regarding))?\s*([\s\S]*)/i;
const REMEMBER = /\bremember(?:\s+that)?\s+([\s\S]+)/i;

function toolUse(request: ModelRequest, name: string, input: Record<string, string>): DemoDecision {
  const id = `toolu_${conversationHash(request, name).slice(0, 24)}`;
  return { content: [{ type: "tool_use", id, name, input }], stopReason: "tool_use" };
}

/** A sentence for the reference tools' results (weather, simulated delete); undefined otherwise. */
function describeResult(content: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(content);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.city === "string" && typeof v.temperatureC === "number" && typeof v.conditions === "string") {
    return `In ${v.city} it is ${v.temperatureC}°C and ${v.conditions}.`;
  }
  if (typeof v.deleted === "string" && typeof v.env === "string") {
    return `Done: ${v.deleted} was deleted in ${v.env}${v.simulated === true ? " (simulated)" : ""}.`;
  }
  return undefined;
}

/**
 * The reference worker's prompts, answered offline and deterministically:
 * - "weather / temperature / forecast … in <City>" → `get_weather {city}`;
 * - "delete X in staging|production" → `delete_resource {resource, env}`;
 * - "what do you remember / recall …" → `recall {query}`; "remember …" → `remember {text}`;
 * - a user message carrying a tool_result → a short text summarising it (errors and denials too);
 * - anything else → a short text answer.
 * A tool is only called when the request offers it.
 */
export function demoDecision(request: ModelRequest): DemoDecision {
  const user = lastUser(request);
  const userBlocks = user ? blocks(user) : [];
  const results = userBlocks.filter((b) => b.type === "tool_result");
  if (results.length > 0) {
    const lines = results.map((r) =>
      r.isError
        ? `I could not complete ${toolNameFor(request, r.toolUseId)}: ${clip(r.content)}`
        : (describeResult(r.content) ?? `${toolNameFor(request, r.toolUseId)} returned: ${clip(r.content)}`),
    );
    return { content: [{ type: "text", text: lines.join("\n") }], stopReason: "end_turn" };
  }
  const prompt = userBlocks
    .filter((b) => b.type === "text")
    .map((b) => b.text)
    .join("\n")
    .trim();
  const offered = new Set((request.tools ?? []).map((t) => t.name));

  if (offered.has("get_weather") && WEATHER.test(prompt)) {
    const city = CITY.exec(prompt)?.[1]?.replace(/[.?!,]+$/, "");
    if (city) return toolUse(request, "get_weather", { city });
    return {
      content: [{ type: "text", text: "Which city would you like the weather for?" }],
      stopReason: "end_turn",
    };
  }
  const del = DELETE.exec(prompt);
  if (offered.has("delete_resource") && del?.[1] && del[2]) {
    return toolUse(request, "delete_resource", { resource: del[1], env: del[2].toLowerCase() });
  }
  const recall = RECALL.exec(prompt);
  if (offered.has("recall") && recall) {
    const query = (recall[1] ?? "").replace(/[?.!]+$/, "").trim();
    return toolUse(request, "recall", { query: query.length > 0 ? query : prompt });
  }
  const remember = REMEMBER.exec(prompt);
  if (offered.has("remember") && remember?.[1]) {
    return toolUse(request, "remember", { text: remember[1].trim() });
  }
  const text =
    prompt.length === 0
      ? "Hello! How can I help?"
      : `(scripted demo) You asked: "${clip(prompt, 80)}". This offline model only answers the demo prompts.`;
  return { content: [{ type: "text", text }], stopReason: "end_turn" };
}
