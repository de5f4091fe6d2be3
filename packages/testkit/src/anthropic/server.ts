import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type {
  FakeDropReply,
  FakeErrorReply,
  FakeMalformedReply,
  FakeReply,
  FakeStep,
  FakeStreamOptions,
  FakeUsage,
  RecordedRequest,
} from "./replies.js";
import { frame, messageEvents, type StreamEvent } from "./stream-events.js";
import {
  fakeOutputTokens,
  fakePromptTokens,
  promptSegments,
  type WireBlock,
  type WireRequest,
} from "./tokens.js";

/** The text of the last user message (text blocks and tool results), cut to 80 characters. */
function lastUserText(request: WireRequest): string {
  const last = (request.messages ?? []).findLast((m) => m.role === "user");
  if (last === undefined) return "";
  const text =
    typeof last.content === "string"
      ? last.content
      : last.content
          .map((b) =>
            b.type === "tool_result"
              ? typeof b.content === "string"
                ? b.content
                : (b.content ?? []).map((c) => c.text ?? "").join("\n")
              : (b.text ?? ""),
          )
          .join("\n");
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** The answer when neither the script nor the handler has one: a text echo of the last user message. */
function echoReply(request: WireRequest): FakeReply {
  return { content: [{ type: "text", text: `You said: ${lastUserText(request)}` }], stopReason: "end_turn" };
}

/** Options for {@link startFakeAnthropic}. */
export interface StartFakeAnthropicOptions {
  /** @defaultValue a free port */
  port?: number;
  /** @defaultValue `127.0.0.1` */
  host?: string;
  /** Replies served in order, one per request, before falling back to `handler` / the echo answer. */
  script?: FakeStep[];
  /**
   * Answers a request when the script is empty. Return `undefined` to use the echo answer. The
   * fake knows no tool: a handler that calls tools comes from the caller (for the reference
   * tools, `referenceReply` of `@agentry/reference/testing`).
   * @defaultValue the echo answer: one text block `You said: <the last user message>`
   */
  handler?: (request: RecordedRequest) => FakeReply | undefined;
  /**
   * Prompts shorter than this at their last `cache_control` breakpoint are not cached, as on the
   * real API (1024 tokens for Sonnet/Opus).
   * @defaultValue 1024
   */
  minCacheableTokens?: number;
  /** When set, requests must carry this key (`x-api-key` or `Authorization: Bearer`), else 401. */
  apiKey?: string;
  /**
   * Makes code and non-English text count more (see `fakeTextTokens`): punctuation runs and
   * non-ASCII characters cost this many times their usual tokens, in billing and in
   * `count_tokens` alike. At 4, code and CJK text bill about 1.5–2× Agentry's estimate.
   * @defaultValue 1
   */
  tokenInflation?: number;
  /**
   * Called once the response to a request has been sent or cut off (the connection closed):
   * with the request's arrival, it bounds how long the caller was inside the call.
   */
  onResponseClosed?: (request: RecordedRequest) => void;
  /**
   * Pause between the events of a streamed answer (`stream: true`), unless a reply sets its own.
   * @defaultValue 0 (every event at once)
   */
  streamEventDelayMs?: number;
  /** Called right after each event of a streamed answer is written to the socket (benchmarks time deltas with it). */
  onStreamEvent?: (sent: FakeSentEvent) => void;
}

/** An event of a streamed answer, as {@link StartFakeAnthropicOptions.onStreamEvent} sees it. */
export interface FakeSentEvent {
  /** The answer's `request-id`. */
  requestId: string;
  event: string;
  data: Record<string, unknown>;
  /** `performance.timeOrigin + performance.now()` right after the write: comparable across processes of one machine. */
  sentAt: number;
}

/**
 * What the fake has billed: the sum of `usage` over every successful `POST /v1/messages` answer
 * sent. A streamed answer bills its input and cache tokens when `message_start` is sent and its
 * output when `message_delta` is, so a stream cut off before its end bills its prompt only.
 */
export interface FakeBilling {
  /** Messages answered with 200 and a usage (a streamed one once its `message_start` is sent). */
  calls: number;
  input: number;
  output: number;
  cacheCreationInput: number;
  cacheReadInput: number;
  /** Every token above, summed: what a budget ledger should hold for these calls. */
  tokens: number;
  /** `POST /v1/messages/count_tokens` answered with a count (never billed). */
  countCalls: number;
}

/** A running fake Messages API. */
export interface FakeAnthropic {
  /** Base URL for the SDK's `baseURL` / `ANTHROPIC_BASE_URL`, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  /** Every request received, in order, with parsed body and lower-cased headers. */
  readonly requests: RecordedRequest[];
  /** Appends replies to the script. */
  enqueue(...steps: FakeStep[]): void;
  /** Appends injected failures to the script (same queue as {@link FakeAnthropic.enqueue}). */
  fail(...failures: FakeStep[]): void;
  /**
   * Queues failures for `POST /v1/messages/count_tokens`, one per count request. Counting has its
   * own queue: it never consumes a scripted Messages reply, and Messages calls never consume these.
   */
  failCountTokens(...failures: (FakeErrorReply | FakeMalformedReply | FakeDropReply)[]): void;
  /** What has been billed since the start (or the last {@link FakeAnthropic.reset}). */
  billed(): FakeBilling;
  /** Replies still queued. */
  pending(): number;
  /** Empties the scripts, the recorded requests, the billing totals and the prompt cache. */
  reset(): void;
  /** Stops the server, cutting any slow response short. */
  close(): Promise<void>;
}

interface ErrorBody {
  type: "error";
  error: { type: string; message: string };
  request_id: string;
}

function errorBody(type: string, message: string, requestId: string): ErrorBody {
  return { type: "error", error: { type, message }, request_id: requestId };
}

function lowerHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

function validate(body: unknown, counting: boolean): string | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    return "body: Input should be an object";
  const b = body as Record<string, unknown>;
  if (typeof b["model"] !== "string") return "model: Field required";
  if (counting) {
    // The counting endpoint takes the prompt only, as on the real API.
    if (b["max_tokens"] !== undefined) return "max_tokens: Extra inputs are not permitted";
  } else if (typeof b["max_tokens"] !== "number" || !Number.isInteger(b["max_tokens"]) || b["max_tokens"] < 1)
    return "max_tokens: Field required";
  if (!Array.isArray(b["messages"]) || b["messages"].length === 0)
    return "messages: at least one message is required";
  if (b["tools"] !== undefined) {
    if (!Array.isArray(b["tools"])) return "tools: Input should be a valid list";
    for (const [i, t] of (b["tools"] as unknown[]).entries()) {
      const tool = t as Record<string, unknown>;
      if (typeof tool["name"] !== "string") return `tools.${i}.name: Field required`;
      const schema = tool["input_schema"] as Record<string, unknown> | undefined;
      if (typeof schema !== "object" || schema === null || schema["type"] !== "object")
        return `tools.${i}.input_schema.type: Input should be 'object'`;
    }
  }
  return undefined;
}

/**
 * Starts a fake Anthropic Messages API on loopback, good enough for the real `@anthropic-ai/sdk`:
 * `POST /v1/messages` with the real response and error JSON shapes (and, for `stream: true`, the
 * real server-sent event framing the SDK's `messages.stream` helper parses), a `request-id` header,
 * scripted replies, injected failures, prompt-cache accounting, a caller's `handler`, else a text echo (it knows no tool);
 * `POST /v1/messages/count_tokens` answered by the same counter its billing uses (free, as on
 * the real API), and a running total of what it billed (`billed()`).
 * Stateless apart from its script and prompt cache, so many worker processes can share one.
 */
export async function startFakeAnthropic(options: StartFakeAnthropicOptions = {}): Promise<FakeAnthropic> {
  const queue: FakeStep[] = [...(options.script ?? [])];
  const requests: RecordedRequest[] = [];
  const cachedPrefixes = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  const minCacheable = options.minCacheableTokens ?? 1024;
  const inflation = options.tokenInflation ?? 1;
  const countFailures: (FakeErrorReply | FakeMalformedReply | FakeDropReply)[] = [];
  const emptyBilling = (): FakeBilling => ({
    calls: 0,
    input: 0,
    output: 0,
    cacheCreationInput: 0,
    cacheReadInput: 0,
    tokens: 0,
    countCalls: 0,
  });
  let billing = emptyBilling();
  let counter = 0;

  const usageFor = (body: WireRequest): Omit<FakeUsage, "output_tokens"> => {
    const segments = promptSegments(body, inflation);
    const total = segments.reduce((s, x) => s + x.tokens, 0);
    let last = -1;
    segments.forEach((s, i) => {
      if (s.cacheBreakpoint) last = i;
    });
    if (last < 0) return { input_tokens: total, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
    const prefix = segments.slice(0, last + 1);
    const prefixTokens = prefix.reduce((s, x) => s + x.tokens, 0);
    if (prefixTokens < minCacheable)
      return { input_tokens: total, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
    const key = createHash("sha256")
      .update(JSON.stringify(prefix.map((p) => p.key)))
      .digest("hex");
    const hit = cachedPrefixes.has(key);
    cachedPrefixes.add(key);
    return {
      input_tokens: total - prefixTokens,
      cache_creation_input_tokens: hit ? 0 : prefixTokens,
      cache_read_input_tokens: hit ? prefixTokens : 0,
    };
  };

  const later = (ms: number | undefined, fn: () => void): void => {
    if (!ms || ms <= 0) {
      fn();
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const sendJson = (
    res: ServerResponse,
    status: number,
    body: unknown,
    requestId: string,
    headers: Record<string, string> = {},
  ): boolean => {
    if (res.destroyed || res.writableEnded) return false;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      "request-id": requestId,
      ...headers,
    });
    res.end(text);
    return true;
  };

  const sendFailure = (
    res: ServerResponse,
    reply: FakeErrorReply | FakeMalformedReply | FakeDropReply,
    requestId: string,
    streaming = false,
  ): void => {
    switch (reply.kind) {
      case "error":
        sendJson(
          res,
          reply.status,
          errorBody(reply.type, reply.message, requestId),
          requestId,
          reply.headers,
        );
        return;
      case "malformed": {
        if (streaming) {
          // A stream whose first event carries the body as its data: not JSON, or not a message.
          const text = `event: message_start\ndata: ${(reply.body ?? "{not json").replace(/\n/g, " ")}\n\n`;
          res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "request-id": requestId });
          res.end(text);
          return;
        }
        const text = reply.body ?? "{not json";
        res.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(text),
          "request-id": requestId,
        });
        res.end(text);
        return;
      }
      case "drop":
        res.socket?.destroy();
        return;
    }
  };

  const answer = (
    recorded: RecordedRequest,
    reply: FakeReply,
    res: ServerResponse,
    requestId: string,
  ): void => {
    later(reply.delayMs, () => {
      if (res.destroyed || res.writableEnded) return;
      switch (reply.kind) {
        case "error":
        case "malformed":
        case "drop":
          sendFailure(res, reply, requestId, recorded.body["stream"] === true);
          return;
        default: {
          const body = recorded.body;
          const content: WireBlock[] = (
            typeof reply.content === "string"
              ? [{ type: "text" as const, text: reply.content }]
              : reply.content
          ).map((block, i) =>
            block.type === "text"
              ? { type: "text", text: block.text }
              : {
                  type: "tool_use",
                  id:
                    block.id ??
                    `toolu_fake_${createHash("sha256")
                      .update(JSON.stringify(body.messages ?? []))
                      .update(String(i))
                      .update(block.name)
                      .digest("hex")
                      .slice(0, 24)}`,
                  name: block.name,
                  input: block.input,
                },
          );
          const hasToolUse = content.some((b) => b.type === "tool_use");
          // The real API never generates past max_tokens: cap the computed output there (an
          // explicit usage override in the script still wins).
          const computedOutput = fakeOutputTokens(content);
          const maxTokens = body.max_tokens ?? computedOutput;
          const truncated = computedOutput > maxTokens;
          const usage: FakeUsage = {
            ...usageFor(body),
            output_tokens: truncated ? maxTokens : computedOutput,
            ...reply.usage,
          };
          const id = `msg_fake_${String(counter).padStart(6, "0")}`;
          const model = reply.model ?? body.model ?? "";
          const wireContent = content.map((b) =>
            b.type === "text"
              ? { type: "text", text: b.text, citations: null }
              : { ...b, caller: { type: "direct" } },
          );
          const stopReason =
            reply.stopReason ?? (truncated ? "max_tokens" : hasToolUse ? "tool_use" : "end_turn");
          if (body["stream"] === true) {
            const events = messageEvents({ id, model, content: wireContent, stopReason, usage });
            stream(res, events, usage, requestId, reply.stream ?? {});
            return;
          }
          const sent = sendJson(
            res,
            200,
            {
              id,
              type: "message",
              role: "assistant",
              model,
              content: wireContent,
              stop_reason: stopReason,
              stop_sequence: null,
              usage: {
                ...usage,
                cache_creation: null,
                inference_geo: null,
                output_tokens_details: null,
                server_tool_use: null,
                service_tier: "standard",
              },
              container: null,
            },
            requestId,
          );
          if (sent) {
            billPrompt(usage);
            billOutput(usage);
          }
        }
      }
    });
  };

  const billPrompt = (usage: FakeUsage): void => {
    billing.calls += 1;
    billing.input += usage.input_tokens;
    billing.cacheCreationInput += usage.cache_creation_input_tokens;
    billing.cacheReadInput += usage.cache_read_input_tokens;
    billing.tokens += usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens;
  };
  const billOutput = (usage: FakeUsage): void => {
    billing.output += usage.output_tokens;
    billing.tokens += usage.output_tokens;
  };

  /**
   * Sends a streamed answer event by event (paced by `eventDelayMs`), with the faults of
   * `pacing`; stops quietly when the client went away.
   */
  const stream = (
    res: ServerResponse,
    events: StreamEvent[],
    usage: FakeUsage,
    requestId: string,
    pacing: FakeStreamOptions,
  ): void => {
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "request-id": requestId,
    });
    res.flushHeaders();
    const delayMs = pacing.eventDelayMs ?? options.streamEventDelayMs ?? 0;
    let sent = 0;
    const pump = (): void => {
      for (;;) {
        if (res.destroyed || res.writableEnded) return;
        if (pacing.stallAfterEvents !== undefined && sent >= pacing.stallAfterEvents) return;
        if (pacing.dropAfterEvents !== undefined && sent >= pacing.dropAfterEvents) {
          res.socket?.destroy();
          return;
        }
        const failure = pacing.errorAfterEvents;
        if (failure !== undefined && sent >= failure.after) {
          res.end(
            frame({
              event: "error",
              data: {
                type: "error",
                error: { type: failure.type, message: failure.message },
                request_id: requestId,
              },
            }),
          );
          return;
        }
        const event = events[sent];
        if (event === undefined) {
          res.end();
          return;
        }
        sent += 1;
        res.write(frame(event));
        if (event.event === "message_start") billPrompt(usage);
        if (event.event === "message_delta") billOutput(usage);
        options.onStreamEvent?.({
          requestId,
          event: event.event,
          data: event.data,
          sentAt: performance.timeOrigin + performance.now(),
        });
        if (delayMs > 0 && sent < events.length) {
          later(delayMs, pump);
          return;
        }
      }
    };
    pump();
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      counter += 1;
      const requestId = `req_fake_${String(counter).padStart(6, "0")}`;
      const headers = lowerHeaders(req);
      const raw = Buffer.concat(chunks).toString("utf8");
      let parsed: unknown;
      try {
        parsed = raw.length === 0 ? undefined : JSON.parse(raw);
      } catch {
        sendJson(
          res,
          400,
          errorBody("invalid_request_error", "Request body is not valid JSON", requestId),
          requestId,
        );
        return;
      }
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      const recorded: RecordedRequest = {
        method: req.method ?? "GET",
        path,
        headers,
        body: (parsed ?? {}) as RecordedRequest["body"],
      };
      requests.push(recorded);
      if (options.onResponseClosed) res.once("close", () => options.onResponseClosed?.(recorded));
      const counting = path === "/v1/messages/count_tokens";
      if (recorded.method !== "POST" || (path !== "/v1/messages" && !counting)) {
        sendJson(
          res,
          404,
          errorBody("not_found_error", `Not found: ${recorded.method} ${path}`, requestId),
          requestId,
        );
        return;
      }
      if (options.apiKey !== undefined) {
        const given = headers["x-api-key"] ?? headers["authorization"]?.replace(/^Bearer\s+/i, "");
        if (given !== options.apiKey) {
          sendJson(res, 401, errorBody("authentication_error", "invalid x-api-key", requestId), requestId);
          return;
        }
      }
      const problem = validate(parsed, counting);
      if (problem !== undefined) {
        sendJson(res, 400, errorBody("invalid_request_error", problem, requestId), requestId);
        return;
      }
      if (counting) {
        const failure = countFailures.shift();
        if (failure !== undefined) {
          later(failure.delayMs, () => sendFailure(res, failure, requestId));
          return;
        }
        // The same counter as billing, on the whole prompt (cached or not), like the real endpoint.
        if (sendJson(res, 200, { input_tokens: fakePromptTokens(recorded.body, inflation) }, requestId))
          billing.countCalls += 1;
        return;
      }
      const step = queue.shift();
      let reply: FakeReply | undefined;
      try {
        reply = typeof step === "function" ? step(recorded) : step;
        reply ??= options.handler?.(recorded);
      } catch (err) {
        sendJson(
          res,
          500,
          errorBody("api_error", `fake handler failed: ${String(err)}`, requestId),
          requestId,
        );
        return;
      }
      reply ??= echoReply(recorded.body);
      answer(recorded, reply, res, requestId);
    });
  };

  const server = createServer(onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = options.host ?? "127.0.0.1";

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    requests,
    enqueue: (...steps) => {
      queue.push(...steps);
    },
    fail: (...failures) => {
      queue.push(...failures);
    },
    failCountTokens: (...failures) => {
      countFailures.push(...failures);
    },
    billed: () => ({ ...billing }),
    pending: () => queue.length,
    reset: () => {
      queue.length = 0;
      countFailures.length = 0;
      requests.length = 0;
      cachedPrefixes.clear();
      billing = emptyBilling();
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
