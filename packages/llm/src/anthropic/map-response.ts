import { AgentryError } from "@agentry/core";
import { z } from "zod";
import type { ModelResponse, StopReason, TextBlock, ToolUseBlock } from "../model/types.js";

const count = z.number().int().nonnegative();

const messageSchema = z.object({
  id: z.string(),
  type: z.literal("message"),
  role: z.literal("assistant"),
  model: z.string(),
  content: z.array(z.looseObject({ type: z.string() })),
  stop_reason: z.string().nullable(),
  usage: z.looseObject({
    input_tokens: count,
    output_tokens: count,
    cache_creation_input_tokens: count.nullish(),
    cache_read_input_tokens: count.nullish(),
  }),
});

const textSchema = z.object({ type: z.literal("text"), text: z.string() });
const toolUseSchema = z.object({
  type: z.literal("tool_use"),
  id: z.string(),
  name: z.string(),
  input: z.unknown(),
});

const STOP_REASONS: Record<string, StopReason> = {
  end_turn: "end_turn",
  tool_use: "tool_use",
  max_tokens: "max_tokens",
  stop_sequence: "stop_sequence",
  pause_turn: "pause_turn",
  refusal: "refusal",
  // The context window filled up: like max_tokens, the answer was cut short.
  model_context_window_exceeded: "max_tokens",
};

/**
 * A Messages API response → our `ModelResponse`. Validates the shape, since a body that parsed
 * as JSON can still be wrong; a wrong one is `PROVIDER_BAD_RESPONSE` (retryable). Block kinds the
 * contract does not carry (thinking, server tools) are dropped.
 */
export function fromMessage(body: unknown, requestId?: string | null): ModelResponse {
  const parsed = messageSchema.safeParse(body);
  if (!parsed.success) {
    throw new AgentryError(
      "PROVIDER_BAD_RESPONSE",
      `Anthropic response has an unexpected shape: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      {
        retryable: true,
        details: { requestId: requestId ?? null },
      },
    );
  }
  const message = parsed.data;
  const content: (TextBlock | ToolUseBlock)[] = [];
  for (const raw of message.content) {
    if (raw.type === "text") {
      const block = textSchema.safeParse(raw);
      if (!block.success)
        throw new AgentryError("PROVIDER_BAD_RESPONSE", "Anthropic text block without text", {
          retryable: true,
        });
      content.push({ type: "text", text: block.data.text });
    } else if (raw.type === "tool_use") {
      const block = toolUseSchema.safeParse(raw);
      if (!block.success)
        throw new AgentryError("PROVIDER_BAD_RESPONSE", "Anthropic tool_use block without id or name", {
          retryable: true,
        });
      content.push({ type: "tool_use", id: block.data.id, name: block.data.name, input: block.data.input });
    }
  }
  const stopReason =
    message.stop_reason === null ? "end_turn" : (STOP_REASONS[message.stop_reason] ?? "end_turn");
  return {
    id: message.id,
    model: message.model,
    content,
    stopReason,
    usage: {
      input: message.usage.input_tokens,
      output: message.usage.output_tokens,
      cacheCreationInput: message.usage.cache_creation_input_tokens ?? 0,
      cacheReadInput: message.usage.cache_read_input_tokens ?? 0,
    },
    ...(requestId ? { providerRequestId: requestId } : {}),
  };
}
