import { AgentryError, positiveInt } from "@agentry/core";
import type { Message } from "@agentry/llm";
import { z } from "zod";
import { requireId } from "../internal/validate.js";
import {
  DEFAULT_SESSION_OPTIONS,
  type CompiledSessionStoreOptions,
  type SessionStoreOptions,
} from "./session-store.js";

const knownBlockSchemas: Record<string, z.ZodType> = {
  text: z.object({ type: z.literal("text"), text: z.string() }),
  tool_use: z.object({ type: z.literal("tool_use"), id: z.string(), name: z.string(), input: z.unknown() }),
  tool_result: z.object({
    type: z.literal("tool_result"),
    toolUseId: z.string(),
    content: z.string(),
    isError: z.boolean().optional(),
  }),
};

// Known block types are checked field by field; a block type this version does not know
// (a newer model feature) is stored as it is, as long as it names its type.
const contentBlockSchema = z
  .object({ type: z.string() })
  .passthrough()
  .superRefine((block, ctx) => {
    const known = knownBlockSchemas[block.type];
    if (!known) return;
    const parsed = known.safeParse(block);
    if (!parsed.success) for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, code: "custom" });
  });

const messageSchema = z.object({
  role: z.enum(["user", "assistant"]),
  content: z.union([z.string(), z.array(contentBlockSchema)]),
});

/** Applies defaults and checks the bounds. */
export function compileSessionStoreOptions(options: SessionStoreOptions = {}): CompiledSessionStoreOptions {
  return {
    maxMessages: positiveInt(options.maxMessages ?? DEFAULT_SESSION_OPTIONS.maxMessages, "maxMessages"),
    maxTokens: positiveInt(options.maxTokens ?? DEFAULT_SESSION_OPTIONS.maxTokens, "maxTokens"),
    ttlMs: positiveInt(options.ttlMs ?? DEFAULT_SESSION_OPTIONS.ttlMs, "ttlMs"),
    maxMessageBytes: positiveInt(
      options.maxMessageBytes ?? DEFAULT_SESSION_OPTIONS.maxMessageBytes,
      "maxMessageBytes",
    ),
  };
}

/**
 * Validates and JSON-encodes messages for storage. Throws INVALID_INPUT for a bad session id,
 * a malformed message or one larger than `maxMessageBytes`.
 */
export function encodeMessages(sessionId: unknown, messages: unknown, maxMessageBytes: number): string[] {
  requireId(sessionId, "sessionId");
  if (!Array.isArray(messages)) {
    throw new AgentryError("INVALID_INPUT", "messages must be an array");
  }
  return messages.map((message: unknown, index) => {
    const parsed = messageSchema.safeParse(message);
    if (!parsed.success) {
      throw new AgentryError("INVALID_INPUT", `messages[${index}] is not a valid message`, {
        details: {
          index,
          issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
        },
      });
    }
    const json = JSON.stringify(message);
    const bytes = Buffer.byteLength(json, "utf8");
    if (bytes > maxMessageBytes) {
      throw new AgentryError(
        "INVALID_INPUT",
        `messages[${index}] is ${bytes} bytes; the limit is ${maxMessageBytes}`,
        {
          details: { index, bytes, maxMessageBytes, reason: "message_too_large" },
        },
      );
    }
    return json;
  });
}

/** Approximate tokens of one message (≈ 4 characters a token, plus a small per-message overhead). */
export function estimateMessageTokens(message: Message): number {
  let chars = 0;
  if (typeof message.content === "string") {
    chars = message.content.length;
  } else {
    for (const block of message.content) {
      switch (block.type) {
        case "text":
          chars += block.text.length;
          break;
        case "tool_use":
          chars += block.name.length + (JSON.stringify(block.input) ?? "").length;
          break;
        case "tool_result":
          chars += block.content.length;
          break;
        default:
          chars += (JSON.stringify(block) ?? "").length;
      }
    }
  }
  return Math.ceil(chars / 4) + 4;
}

/** A user message that carries no tool_result: a conversation may start there. */
export function isTurnStart(message: Message): boolean {
  if (message.role !== "user") return false;
  return typeof message.content === "string" || message.content.every((b) => b.type !== "tool_result");
}

/**
 * The longest suffix of `messages` that fits both bounds and starts at a user text turn.
 * Bounds are hard: when even the latest turn does not fit, the result is empty.
 */
export function trimHistory(
  messages: Message[],
  bounds: { maxMessages: number; maxTokens: number },
): Message[] {
  let start = messages.length;
  let tokens = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i] as Message;
    tokens += estimateMessageTokens(message);
    if (messages.length - i > bounds.maxMessages || tokens > bounds.maxTokens) break;
    if (isTurnStart(message)) start = i;
  }
  return messages.slice(start);
}
