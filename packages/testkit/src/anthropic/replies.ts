import type { WireBlock, WireRequest } from "./tokens.js";

/** Usage fields as the Messages API names them. Any field left out is computed by the fake. */
export interface FakeUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/** A scripted successful reply. */
export interface FakeMessageReply {
  kind?: "message";
  /** Content blocks; a plain string is one text block. Tool-use ids default to a hash of the request. */
  content: string | FakeContentBlock[];
  /** @defaultValue `tool_use` when content has a tool_use block, else `end_turn` */
  stopReason?: "end_turn" | "tool_use" | "max_tokens" | "stop_sequence" | "pause_turn" | "refusal";
  /** Overrides for the computed usage. */
  usage?: Partial<FakeUsage>;
  /** @defaultValue the request's model */
  model?: string;
  /** Wait this long before answering (slow responses). */
  delayMs?: number;
  /** How the answer is sent when the request asks for `stream: true`; ignored otherwise. */
  stream?: FakeStreamOptions;
}

/**
 * Pacing and faults of a streamed answer. Events are counted from 1 in the order sent
 * (`message_start` is event 1, then `ping`, then the content events).
 */
export interface FakeStreamOptions {
  /** Wait this long before each event after the first. @defaultValue the server's `streamEventDelayMs` */
  eventDelayMs?: number;
  /** Send this many events, then nothing more, keeping the connection open (a stalled stream). */
  stallAfterEvents?: number;
  /** Send this many events, then destroy the connection (a stream cut off). */
  dropAfterEvents?: number;
  /** Send `after` events, then an `error` event with this error type and message, and end the stream. */
  errorAfterEvents?: { after: number; type: string; message: string };
}

/** A content block of a scripted reply. */
export type FakeContentBlock =
  { type: "text"; text: string } | { type: "tool_use"; id?: string; name: string; input: unknown };

/** An injected HTTP failure, answered with the real error JSON shape. */
export interface FakeErrorReply {
  kind: "error";
  status: number;
  /** Anthropic error type, e.g. `rate_limit_error`, `overloaded_error`, `api_error`. */
  type: string;
  message: string;
  headers?: Record<string, string>;
  delayMs?: number;
}

/** A 200 response whose body is not valid JSON. */
export interface FakeMalformedReply {
  kind: "malformed";
  body?: string;
  delayMs?: number;
}

/** The connection is destroyed without an answer (a network failure). */
export interface FakeDropReply {
  kind: "drop";
  delayMs?: number;
}

/** Anything the fake can answer with. */
export type FakeReply = FakeMessageReply | FakeErrorReply | FakeMalformedReply | FakeDropReply;

/** A request as the fake recorded it. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: WireRequest & Record<string, unknown>;
}

/** A script step: a reply, or a function of the request that returns one. */
export type FakeStep = FakeReply | ((request: RecordedRequest) => FakeReply);

/** Builders for scripted replies and injected failures. */
export const fakeReply = {
  /** A text answer. */
  text(text: string, extra: Omit<FakeMessageReply, "content"> = {}): FakeMessageReply {
    return { ...extra, content: [{ type: "text", text }] };
  },
  /** A tool call (optionally after some text). */
  toolUse(
    name: string,
    input: unknown,
    extra: Omit<FakeMessageReply, "content"> & { id?: string; text?: string } = {},
  ): FakeMessageReply {
    const { id, text, ...rest } = extra;
    const blocks: FakeContentBlock[] = [];
    if (text !== undefined) blocks.push({ type: "text", text });
    blocks.push({ type: "tool_use", name, input, ...(id === undefined ? {} : { id }) });
    return { ...rest, content: blocks };
  },
  /** 429 `rate_limit_error`; `retryAfter` becomes the `retry-after` header (seconds or an HTTP date). */
  rateLimited(
    options: { retryAfter?: string; retryAfterMs?: number; message?: string } = {},
  ): FakeErrorReply {
    const headers: Record<string, string> = {};
    if (options.retryAfter !== undefined) headers["retry-after"] = options.retryAfter;
    if (options.retryAfterMs !== undefined) headers["retry-after-ms"] = String(options.retryAfterMs);
    return {
      kind: "error",
      status: 429,
      type: "rate_limit_error",
      message: options.message ?? "Number of request tokens has exceeded your per-minute rate limit",
      headers,
    };
  },
  /** 529 `overloaded_error`. */
  overloaded(options: { retryAfterMs?: number } = {}): FakeErrorReply {
    return {
      kind: "error",
      status: 529,
      type: "overloaded_error",
      message: "Overloaded",
      headers: options.retryAfterMs === undefined ? {} : { "retry-after-ms": String(options.retryAfterMs) },
    };
  },
  /** 500 `api_error` (or another 5xx status). */
  serverError(status = 500, message = "Internal server error"): FakeErrorReply {
    return { kind: "error", status, type: "api_error", message };
  },
  /** Any status with the real error body, e.g. `fakeReply.error(400, "invalid_request_error", "max_tokens: ...")`. */
  error(status: number, type: string, message: string, headers: Record<string, string> = {}): FakeErrorReply {
    return { kind: "error", status, type, message, headers };
  },
  /** 200 with a body that is not JSON. */
  malformed(body = '{"id": "msg_broken", "type": "message", "content": ['): FakeMalformedReply {
    return { kind: "malformed", body };
  },
  /** The socket is destroyed with no answer. */
  drop(): FakeDropReply {
    return { kind: "drop" };
  },
} as const;

/** The parts of {@link WireBlock} a reply's content becomes. */
export type { WireBlock };
