import type { FakeUsage } from "./replies.js";

/** One server-sent event of a streamed Messages answer: its `event:` name and its `data:` JSON. */
export interface StreamEvent {
  event: string;
  data: Record<string, unknown>;
}

/** A finished answer as the fake would send it in one JSON body (content blocks in wire form). */
export interface StreamedMessage {
  id: string;
  model: string;
  content: Record<string, unknown>[];
  stopReason: string;
  usage: FakeUsage;
}

/** Words with their trailing whitespace (leading whitespace on its own): the pieces concatenate to `text`. */
export function textChunks(text: string): string[] {
  return text.match(/\s+|\S+\s*/g) ?? [];
}

/** A tool input's JSON in pieces of about `size` characters, as `input_json_delta` sends it. */
export function jsonChunks(input: unknown, size = 12): string[] {
  const json = JSON.stringify(input ?? {});
  const chunks: string[] = [];
  for (let i = 0; i < json.length; i += size) chunks.push(json.slice(i, i + size));
  return chunks;
}

/**
 * The event sequence of the Messages streaming API for one answer: `message_start` (input and
 * cache usage, output 1), a `ping`, for each block `content_block_start`, its deltas
 * (`text_delta` per word, `input_json_delta` per piece of the tool input's JSON) and
 * `content_block_stop`, then `message_delta` (stop reason; usage with the final output and the
 * cumulative input and cache counts, as the real API sends them) and `message_stop`.
 */
export function messageEvents(message: StreamedMessage): StreamEvent[] {
  const { usage } = message;
  const events: StreamEvent[] = [
    {
      event: "message_start",
      data: {
        type: "message_start",
        message: {
          id: message.id,
          type: "message",
          role: "assistant",
          model: message.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: {
            input_tokens: usage.input_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            cache_read_input_tokens: usage.cache_read_input_tokens,
            output_tokens: Math.min(1, usage.output_tokens),
            cache_creation: null,
            server_tool_use: null,
            service_tier: "standard",
          },
          container: null,
        },
      },
    },
    { event: "ping", data: { type: "ping" } },
  ];
  message.content.forEach((block, index) => {
    if (block["type"] === "text") {
      events.push({
        event: "content_block_start",
        data: {
          type: "content_block_start",
          index,
          content_block: { type: "text", text: "", citations: null },
        },
      });
      for (const text of textChunks(String(block["text"] ?? ""))) {
        events.push({
          event: "content_block_delta",
          data: { type: "content_block_delta", index, delta: { type: "text_delta", text } },
        });
      }
    } else {
      const { input, ...start } = block;
      events.push({
        event: "content_block_start",
        data: { type: "content_block_start", index, content_block: { ...start, input: {} } },
      });
      for (const partial of jsonChunks(input)) {
        events.push({
          event: "content_block_delta",
          data: {
            type: "content_block_delta",
            index,
            delta: { type: "input_json_delta", partial_json: partial },
          },
        });
      }
    }
    events.push({ event: "content_block_stop", data: { type: "content_block_stop", index } });
  });
  events.push(
    {
      event: "message_delta",
      data: {
        type: "message_delta",
        delta: { stop_reason: message.stopReason, stop_sequence: null },
        usage: {
          input_tokens: usage.input_tokens,
          cache_creation_input_tokens: usage.cache_creation_input_tokens,
          cache_read_input_tokens: usage.cache_read_input_tokens,
          output_tokens: usage.output_tokens,
          server_tool_use: null,
        },
      },
    },
    { event: "message_stop", data: { type: "message_stop" } },
  );
  return events;
}

/** The wire form of one event: `event:` and `data:` lines and a blank line. */
export function frame(event: StreamEvent): string {
  return `event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`;
}
