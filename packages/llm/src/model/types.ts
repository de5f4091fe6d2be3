/**
 * The LanguageModel contract: the one seam between Agentry and a model provider.
 * Shapes follow Anthropic's Messages API (content blocks, tool_use / tool_result),
 * in camelCase, so the Anthropic adapter is a thin mapping and the ScriptedModel
 * speaks the same language.
 */

/** Plain text. */
export interface TextBlock {
  type: "text";
  text: string;
}

/** The model asks for a tool to run. `input` is whatever JSON the model produced (unvalidated). */
export interface ToolUseBlock {
  type: "tool_use";
  id: string;
  name: string;
  input: unknown;
}

/** The result of a tool call, sent back to the model in a user message. */
export interface ToolResultBlock {
  type: "tool_result";
  toolUseId: string;
  /** Text content of the result (JSON-encoded for structured results). */
  content: string;
  isError?: boolean;
}

export type ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock;

/** One message of a conversation. */
export interface Message {
  role: "user" | "assistant";
  content: string | ContentBlock[];
}

/** A tool the model may call, with its input as JSON Schema. */
export interface ToolDefinition {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
}

/** Why the model stopped. */
export type StopReason = "end_turn" | "tool_use" | "max_tokens" | "stop_sequence" | "pause_turn" | "refusal";

/**
 * Token usage of one call. `cacheCreationInput` and `cacheReadInput` are billed at their own
 * rates and are NOT part of `input`.
 */
export interface Usage {
  input: number;
  output: number;
  cacheCreationInput: number;
  cacheReadInput: number;
}

/**
 * A piece of a response's text as the model generates it. The pieces of one call, in order,
 * concatenate to the response's text: its text blocks joined with `"\n"` (the separator comes as
 * a piece of its own when a text block follows an earlier one).
 */
export interface TextDelta {
  /** Length (UTF-16 code units) of the response's text before this piece. */
  offset: number;
  text: string;
}

/** One request to a model. */
export interface ModelRequest {
  /** Model id, e.g. `claude-sonnet-4-5`. Adapters may have a default. */
  model?: string;
  system?: string;
  messages: Message[];
  tools?: ToolDefinition[];
  maxTokens: number;
  /** Sampling temperature. Not sent by the Anthropic adapter: the Messages API of SDK v1 has none. */
  temperature?: number;
  /** Opt-in prompt caching: mark the system prompt and the tool list as cacheable. */
  cache?: boolean;
  signal?: AbortSignal;
  /** Free-form metadata (task id, tenant) for tracing; never sent to the provider. */
  metadata?: Record<string, string>;
  /**
   * Called with each piece of the response's text while it is generated, before `generate`
   * resolves (see {@link TextDelta}). A model that cannot stream may never call it, so the
   * response stays the truth; a throw from the callback is ignored. A call that fails may have
   * sent pieces of a text that will never be complete.
   */
  onTextDelta?: (delta: TextDelta) => void;
}

/**
 * What an exact input-token count needs: the prompt of a {@link ModelRequest} without `maxTokens`
 * (the provider's counter takes no output budget).
 */
export type TokenCountRequest = Pick<
  ModelRequest,
  "model" | "system" | "messages" | "tools" | "cache" | "signal"
>;

/** One response from a model. */
export interface ModelResponse {
  id: string;
  model: string;
  content: (TextBlock | ToolUseBlock)[];
  stopReason: StopReason;
  usage: Usage;
  /** The provider's request id (Anthropic's `request-id` header), for support tickets and traces. */
  providerRequestId?: string;
}

/**
 * A language model. Implementations: the Anthropic adapter and the offline ScriptedModel.
 * Errors are thrown as `AgentryError` with provider codes (`PROVIDER_RATE_LIMITED` with
 * `retryAfterMs`, `PROVIDER_OVERLOADED`, `PROVIDER_UNAVAILABLE`, `PROVIDER_BAD_REQUEST`, ...).
 */
export interface LanguageModel {
  /** `anthropic` or `scripted`; used as `gen_ai.system`. */
  readonly provider: string;
  /** The model used when a request names none. */
  readonly defaultModel: string;
  generate(request: ModelRequest): Promise<ModelResponse>;
  /**
   * The prompt tokens the provider will bill for this request (`input + cacheCreationInput +
   * cacheReadInput` of its response), counted by the provider itself, so budgets can reserve a
   * true bound where `estimateInputTokens` might undershoot its tokenizer. Not billed. Optional:
   * without it, budgets rely on the estimate alone. A failure throws an `AgentryError`; the
   * Anthropic adapter makes every failure but `CANCELLED` retryable, so a budget that needs the
   * count fails closed (no model call) and the task is retried.
   */
  countInputTokens?(request: TokenCountRequest): Promise<number>;
}

/** The text of a response as its deltas build it: its text blocks joined with `"\n"`. */
export function responseText(content: readonly (TextBlock | ToolUseBlock)[]): string {
  return content.flatMap((block) => (block.type === "text" ? [block.text] : [])).join("\n");
}

/**
 * The pieces a response's text blocks stream as, in order: each block split into words with
 * their trailing whitespace, and `"\n"` between blocks; they concatenate to
 * {@link responseText}. For models that have the whole answer at once and stream it word by word.
 */
export function* textPieces(texts: readonly string[]): Generator<string> {
  for (const [i, text] of texts.entries()) {
    if (i > 0) yield "\n";
    for (const piece of text.match(/\s+|\S+\s*/g) ?? []) yield piece;
  }
}

/** Usage with every field zero. */
export const ZERO_USAGE: Usage = Object.freeze({
  input: 0,
  output: 0,
  cacheCreationInput: 0,
  cacheReadInput: 0,
});

/** Adds two usages field by field. */
export function addUsage(a: Usage, b: Usage): Usage {
  return {
    input: a.input + b.input,
    output: a.output + b.output,
    cacheCreationInput: a.cacheCreationInput + b.cacheCreationInput,
    cacheReadInput: a.cacheReadInput + b.cacheReadInput,
  };
}
