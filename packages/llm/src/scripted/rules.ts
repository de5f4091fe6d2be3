import { createHash } from "node:crypto";
import type { ContentBlock, Message, ModelRequest } from "../model/types.js";
import type { ScriptedReply } from "./reply.js";

/**
 * One row of a {@link ScriptedModel}'s rule table: the reply to a request, or `undefined` to
 * leave it to the next rule. Rules see the request only, so the same conversation always gets
 * the same answer (a retried call too).
 */
export type ScriptedRule = (request: ModelRequest) => ScriptedReply | undefined;

/** A tool result of the last user message, with the name of the tool that produced it. */
export interface ScriptedToolResult {
  name: string;
  content: string;
  isError: boolean;
}

/** What a rule usually reads of a request: the last user message and the tools on offer. */
export interface ScriptedTurn {
  /** Text of the last user message (its text blocks joined), trimmed. */
  prompt: string;
  /** Tool results the last user message carries, in order. */
  toolResults: ScriptedToolResult[];
  /** Names of the tools the request offers. A rule calls only these. */
  offered: ReadonlySet<string>;
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

function toolNameFor(request: ModelRequest, toolUseId: string): string {
  for (const message of request.messages) {
    for (const block of blocks(message)) {
      if (block.type === "tool_use" && block.id === toolUseId) return block.name;
    }
  }
  return "the tool";
}

/** Reads the last user message and the offered tools of a request. */
export function scriptedTurn(request: ModelRequest): ScriptedTurn {
  const user = request.messages.findLast((m) => m.role === "user");
  const userBlocks = user ? blocks(user) : [];
  return {
    prompt: userBlocks
      .flatMap((b) => (b.type === "text" ? [b.text] : []))
      .join("\n")
      .trim(),
    toolResults: userBlocks.flatMap((b) =>
      b.type === "tool_result"
        ? [{ name: toolNameFor(request, b.toolUseId), content: b.content, isError: b.isError === true }]
        : [],
    ),
    offered: new Set((request.tools ?? []).map((t) => t.name)),
  };
}

/** `text` on one line, cut to `max` characters with an ellipsis. */
export function clipText(text: string, max = 160): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The plain sentence for a tool result: what it returned, or why it could not complete. */
export function toolResultLine(result: ScriptedToolResult): string {
  return result.isError
    ? `I could not complete ${result.name}: ${clipText(result.content)}`
    : `${result.name} returned: ${clipText(result.content)}`;
}

/**
 * The answer when no rule has one: tool results are summarised line by line, an empty prompt
 * is greeted, anything else gets a short text saying the model only knows its rules.
 */
export function fallbackReply(request: ModelRequest): ScriptedReply {
  const turn = scriptedTurn(request);
  if (turn.toolResults.length > 0)
    return { content: turn.toolResults.map(toolResultLine).join("\n"), stopReason: "end_turn" };
  const text =
    turn.prompt.length === 0
      ? "Hello! How can I help?"
      : `(scripted) You asked: "${clipText(turn.prompt, 80)}". This offline model only answers the prompts its rules know.`;
  return { content: text, stopReason: "end_turn" };
}

/** The first rule's reply to the request, else {@link fallbackReply}. */
export function answerByRules(request: ModelRequest, rules: readonly ScriptedRule[]): ScriptedReply {
  for (const rule of rules) {
    const reply = rule(request);
    if (reply !== undefined) return reply;
  }
  return fallbackReply(request);
}
