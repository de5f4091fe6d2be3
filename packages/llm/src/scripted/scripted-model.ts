import { AgentryError, sleep } from "@agentry/core";
import { DEFAULT_MODEL } from "../anthropic/anthropic-model.js";
import { estimateInputTokens } from "../estimate/estimate-tokens.js";
import {
  textPieces,
  type LanguageModel,
  type ModelRequest,
  type ModelResponse,
  type TextBlock,
  type ToolUseBlock,
  type Usage,
} from "../model/types.js";
import type { ScriptedBlock, ScriptedFailure, ScriptedReply, ScriptedStep } from "./reply.js";
import { answerByRules, conversationHash, type ScriptedRule } from "./rules.js";

export type { ScriptedBlock, ScriptedFailure, ScriptedReply, ScriptedStep } from "./reply.js";

/** Options for {@link ScriptedModel}. */
export interface ScriptedModelOptions {
  /** Replies served in order, one per call. */
  script?: ScriptedStep[];
  /**
   * The rule table that answers a call the script does not: the first rule with a reply wins;
   * when none has one, tool results are summarised and anything else gets a short text. The
   * model knows no tool of its own: whatever it calls comes from these rules.
   * @defaultValue none
   */
  rules?: readonly ScriptedRule[];
  /**
   * What to do once the script is used up: answer by the rules, or throw `INTERNAL` (a test
   * that scripted N calls usually wants to know about call N+1).
   * @defaultValue `"throw"` when a script is given, else `"rules"`
   */
  whenExhausted?: "rules" | "throw";
  /** @defaultValue {@link DEFAULT_MODEL}, so budgets price scripted calls like real ones */
  defaultModel?: string;
  /** Simulated latency of each call (abortable). @defaultValue 0 */
  latencyMs?: number;
  /**
   * Pause before each streamed piece of text after the first (abortable), so a demo streams at a
   * visible pace. Every answer's text goes to `onTextDelta` word by word either way.
   * @defaultValue 0 (all pieces at once)
   */
  deltaDelayMs?: number;
  /**
   * How many of the latest requests {@link ScriptedModel.requests} keeps, so a long-running
   * worker on the scripted model does not grow without bound. @defaultValue 1000
   */
  maxRecordedRequests?: number;
}

function outputTokens(content: (TextBlock | ToolUseBlock)[]): number {
  let chars = 0;
  let extra = 0;
  for (const block of content) {
    if (block.type === "text") chars += block.text.length;
    else {
      chars += block.name.length + JSON.stringify(block.input ?? {}).length;
      extra += 10;
    }
  }
  return Math.max(1, Math.ceil(chars / 4) + extra);
}

function isFailure(step: ScriptedReply | ScriptedFailure): step is ScriptedFailure {
  return "error" in step;
}

/**
 * An offline, deterministic LanguageModel. It replays a script (recording every request), and
 * otherwise answers by its rule table (`rules`). Same contract as the Anthropic adapter: the
 * answer's text streams to `onTextDelta` word by word (paced by `deltaDelayMs`) before
 * `generate` resolves; aborting throws `CANCELLED`.
 */
export class ScriptedModel implements LanguageModel {
  readonly provider = "scripted";
  readonly defaultModel: string;
  /** The requests received, in order (the latest `maxRecordedRequests` of them). */
  readonly requests: ModelRequest[] = [];
  readonly #maxRecorded: number;
  readonly #queue: ScriptedStep[];
  readonly #rules: readonly ScriptedRule[];
  readonly #whenExhausted: "rules" | "throw";
  readonly #latencyMs: number;
  readonly #deltaDelayMs: number;
  #calls = 0;

  constructor(options: ScriptedModelOptions = {}) {
    this.#queue = [...(options.script ?? [])];
    this.#rules = options.rules ?? [];
    this.#whenExhausted = options.whenExhausted ?? (options.script === undefined ? "rules" : "throw");
    this.defaultModel = options.defaultModel ?? DEFAULT_MODEL;
    this.#latencyMs = options.latencyMs ?? 0;
    this.#deltaDelayMs = options.deltaDelayMs ?? 0;
    this.#maxRecorded = options.maxRecordedRequests ?? 1_000;
  }

  /** Appends steps to the script. */
  enqueue(...steps: ScriptedStep[]): void {
    this.#queue.push(...steps);
  }

  /** Steps not yet used. */
  pending(): number {
    return this.#queue.length;
  }

  async generate(request: ModelRequest): Promise<ModelResponse> {
    const call = this.#calls;
    this.#calls += 1;
    this.requests.push({ ...request });
    if (this.requests.length > this.#maxRecorded)
      this.requests.splice(0, this.requests.length - this.#maxRecorded);
    const cancelled = (): AgentryError =>
      new AgentryError("CANCELLED", "Model call was aborted", {
        details: { model: request.model ?? this.defaultModel },
      });
    if (request.signal?.aborted) throw cancelled();
    if (this.#latencyMs > 0) {
      try {
        await sleep(this.#latencyMs, request.signal);
      } catch {
        throw cancelled();
      }
    }
    const step = this.#queue.shift();
    let reply: ScriptedReply;
    if (step === undefined) {
      if (this.#whenExhausted === "throw") {
        throw new AgentryError("INTERNAL", `ScriptedModel: script exhausted at call ${call + 1}`, {
          details: { call },
        });
      }
      reply = answerByRules(request, this.#rules);
    } else {
      const resolved = typeof step === "function" ? step(request, call) : step;
      if (isFailure(resolved)) throw resolved.error;
      reply = resolved;
    }
    const response = this.#respond(request, reply, call);
    await this.#stream(request, response, cancelled);
    return response;
  }

  /** Sends the response's text to `onTextDelta` word by word, as a provider streams it. */
  async #stream(
    request: ModelRequest,
    response: ModelResponse,
    cancelled: () => AgentryError,
  ): Promise<void> {
    const onTextDelta = request.onTextDelta;
    if (onTextDelta === undefined) return;
    const texts = response.content.flatMap((b) => (b.type === "text" ? [b.text] : []));
    let offset = 0;
    for (const text of textPieces(texts)) {
      if (offset > 0 && this.#deltaDelayMs > 0) {
        try {
          await sleep(this.#deltaDelayMs, request.signal);
        } catch {
          throw cancelled();
        }
      }
      try {
        onTextDelta({ offset, text });
      } catch {
        // The callback's failure is the caller's; the call goes on.
      }
      offset += text.length;
    }
  }

  #respond(request: ModelRequest, reply: ScriptedReply, call: number): ModelResponse {
    const raw: ScriptedBlock[] =
      typeof reply.content === "string" ? [{ type: "text", text: reply.content }] : reply.content;
    const content = raw.map((block, i): TextBlock | ToolUseBlock =>
      block.type === "text"
        ? { type: "text", text: block.text }
        : {
            type: "tool_use",
            id: block.id ?? `toolu_${conversationHash(request, `${i}:${block.name}`).slice(0, 24)}`,
            name: block.name,
            input: block.input,
          },
    );
    const usage: Usage = {
      input: estimateInputTokens(request),
      output: outputTokens(content),
      cacheCreationInput: 0,
      cacheReadInput: 0,
      ...reply.usage,
    };
    return {
      id: `msg_scripted_${conversationHash(request, String(call)).slice(0, 20)}`,
      model: reply.model ?? request.model ?? this.defaultModel,
      content,
      stopReason: reply.stopReason ?? (content.some((b) => b.type === "tool_use") ? "tool_use" : "end_turn"),
      usage,
    };
  }
}

/** A scripted text answer. */
export function scriptedText(text: string, usage?: Partial<Usage>): ScriptedReply {
  return { content: [{ type: "text", text }], ...(usage === undefined ? {} : { usage }) };
}

/** A scripted tool call (optionally preceded by text). */
export function scriptedToolUse(
  name: string,
  input: unknown,
  options: { id?: string; text?: string; usage?: Partial<Usage> } = {},
): ScriptedReply {
  const content: ScriptedBlock[] = [];
  if (options.text !== undefined) content.push({ type: "text", text: options.text });
  content.push({ type: "tool_use", name, input, ...(options.id === undefined ? {} : { id: options.id }) });
  return { content, ...(options.usage === undefined ? {} : { usage: options.usage }) };
}

/** A scripted failure. */
export function scriptedError(error: AgentryError): ScriptedFailure {
  return { error };
}
