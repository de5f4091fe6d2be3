/**
 * The fake server's token counter: a stand-in for Anthropic's tokenizer, so `usage.input_tokens`
 * behaves plausibly (grows with the request, differs between prose, JSON, code and emoji).
 *
 * Rule (per string), scanning runs of one character class:
 * - ASCII letters/digits: one token per 4 characters of a run (ceil), like a BPE word piece;
 * - whitespace: a single space is free (it merges into the next word); any other run costs
 *   one token per 4 characters (ceil), so newlines and indentation count;
 * - ASCII punctuation and symbols: runs merge in pairs (`{"`, `":`), one token per 2 (ceil);
 * - any other code point: 1 token in the Basic Multilingual Plane (accented letters, CJK),
 *   3 tokens above it (emoji).
 *
 * Framing mirrors what the real API adds on top of the text: a few tokens per request, per
 * message and per content block, and a tool-use system prompt of 346 tokens when tools are
 * offered (Anthropic documents 346 for `tool_choice: auto` on Claude 4 models).
 *
 * Inflation (`inflation` > 1) multiplies the tokens of punctuation runs and of non-ASCII
 * characters, rounded up per run and per character: code and non-English text then count more,
 * as on a real tokenizer that splits them finer than prose, while English words do not change.
 * At 4, code and CJK text count about 1.5–2× Agentry's estimate, so budgets can be tested
 * against a provider that bills more than they estimated.
 *
 * It is self-contained on purpose: the estimate in `@agentry/llm` is tested against it and must
 * not share its code.
 */

/** Tokens added when `tools` is non-empty (the tool-use system prompt). */
export const FAKE_TOOL_PROMPT_TOKENS = 346;
const REQUEST_BASE_TOKENS = 4;
const SYSTEM_TOKENS = 3;
const MESSAGE_TOKENS = 4;
const BLOCK_TOKENS = 2;
const TOOL_TOKENS = 5;

type CharClass = "word" | "space" | "punct" | "other";

function classify(cp: number): CharClass {
  if ((cp >= 48 && cp <= 57) || (cp >= 65 && cp <= 90) || (cp >= 97 && cp <= 122)) return "word";
  if (cp === 32 || (cp >= 9 && cp <= 13) || cp === 0xa0 || cp === 0x2028 || cp === 0x2029 || cp === 0xfeff)
    return "space";
  if (cp < 128) return "punct";
  return "other";
}

/** Counts the tokens of one string under the fake rule (see the module comment for `inflation`). */
export function fakeTextTokens(text: string, inflation = 1): number {
  let tokens = 0;
  let runClass: CharClass | undefined;
  let runLength = 0;
  const flush = (): void => {
    if (runClass === "word") tokens += Math.ceil(runLength / 4);
    else if (runClass === "space") tokens += runLength === 1 ? 0 : Math.ceil(runLength / 4);
    else if (runClass === "punct") tokens += Math.ceil(Math.ceil(runLength / 2) * inflation);
    runLength = 0;
  };
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    const cls = classify(cp);
    if (cls === "other") {
      flush();
      runClass = undefined;
      tokens += Math.ceil((cp > 0xffff ? 3 : 1) * inflation);
      continue;
    }
    if (cls !== runClass) {
      flush();
      runClass = cls;
    }
    runLength += 1;
  }
  flush();
  return tokens;
}

/** A content block as it arrives on the wire (snake_case). */
export interface WireBlock {
  type: string;
  text?: string;
  id?: string;
  name?: string;
  input?: unknown;
  tool_use_id?: string;
  content?: string | WireBlock[];
  is_error?: boolean;
  cache_control?: unknown;
}

/** A tool definition as it arrives on the wire. */
export interface WireTool {
  name: string;
  description?: string;
  input_schema?: unknown;
  cache_control?: unknown;
}

/** The parts of a Messages API request body the fake reads. */
export interface WireRequest {
  model?: string;
  max_tokens?: number;
  system?: string | WireBlock[];
  messages?: { role: string; content: string | WireBlock[] }[];
  tools?: WireTool[];
}

function blockTokens(block: WireBlock, inflation: number): number {
  const count = (text: string): number => fakeTextTokens(text, inflation);
  switch (block.type) {
    case "text":
      return BLOCK_TOKENS + count(block.text ?? "");
    case "tool_use":
      return (
        BLOCK_TOKENS +
        count(block.id ?? "") +
        count(block.name ?? "") +
        count(JSON.stringify(block.input ?? {}))
      );
    case "tool_result": {
      const content =
        typeof block.content === "string"
          ? count(block.content)
          : (block.content ?? []).reduce((sum, b) => sum + blockTokens(b, inflation), 0);
      return BLOCK_TOKENS + count(block.tool_use_id ?? "") + content + (block.is_error ? 1 : 0);
    }
    default:
      return BLOCK_TOKENS + count(JSON.stringify(block));
  }
}

/**
 * Token counts of a request laid out in the order the API caches a prompt: tools, then system,
 * then messages. Each entry is one cacheable unit with its own `cache_control` flag.
 */
export interface PromptSegment {
  tokens: number;
  cacheBreakpoint: boolean;
  /** Stable text of the segment, for hashing a cached prefix. */
  key: string;
}

/** Splits a request into prompt segments (see {@link PromptSegment}); `inflation` as in {@link fakeTextTokens}. */
export function promptSegments(request: WireRequest, inflation = 1): PromptSegment[] {
  const count = (text: string): number => fakeTextTokens(text, inflation);
  const segments: PromptSegment[] = [
    { tokens: REQUEST_BASE_TOKENS, cacheBreakpoint: false, key: `model:${request.model ?? ""}` },
  ];
  const tools = request.tools ?? [];
  if (tools.length > 0)
    segments.push({ tokens: FAKE_TOOL_PROMPT_TOKENS, cacheBreakpoint: false, key: "tool-prompt" });
  for (const tool of tools) {
    segments.push({
      tokens:
        TOOL_TOKENS +
        count(tool.name) +
        count(tool.description ?? "") +
        count(JSON.stringify(tool.input_schema ?? {})),
      cacheBreakpoint: tool.cache_control !== undefined && tool.cache_control !== null,
      key: JSON.stringify({ ...tool, cache_control: undefined }),
    });
  }
  if (typeof request.system === "string") {
    segments.push({
      tokens: SYSTEM_TOKENS + count(request.system),
      cacheBreakpoint: false,
      key: request.system,
    });
  } else if (Array.isArray(request.system) && request.system.length > 0) {
    segments.push({ tokens: SYSTEM_TOKENS, cacheBreakpoint: false, key: "system" });
    for (const block of request.system) {
      segments.push({
        tokens: count(block.text ?? ""),
        cacheBreakpoint: block.cache_control !== undefined && block.cache_control !== null,
        key: block.text ?? "",
      });
    }
  }
  for (const message of request.messages ?? []) {
    segments.push({ tokens: MESSAGE_TOKENS, cacheBreakpoint: false, key: `role:${message.role}` });
    if (typeof message.content === "string") {
      segments.push({
        tokens: count(message.content),
        cacheBreakpoint: false,
        key: message.content,
      });
    } else {
      for (const block of message.content) {
        segments.push({
          tokens: blockTokens(block, inflation),
          cacheBreakpoint: block.cache_control !== undefined && block.cache_control !== null,
          key: JSON.stringify({ ...block, cache_control: undefined }),
        });
      }
    }
  }
  return segments;
}

/**
 * Total prompt tokens of a request (input + cache creation + cache read, as the API splits them):
 * what the fake bills and what its `count_tokens` answers, at the same `inflation`.
 */
export function fakePromptTokens(request: WireRequest, inflation = 1): number {
  return promptSegments(request, inflation).reduce((sum, s) => sum + s.tokens, 0);
}

/** Output tokens of a response content list. */
export function fakeOutputTokens(content: WireBlock[]): number {
  let tokens = 0;
  for (const block of content) {
    if (block.type === "text") tokens += fakeTextTokens(block.text ?? "");
    else if (block.type === "tool_use")
      tokens += 8 + fakeTextTokens(block.name ?? "") + fakeTextTokens(JSON.stringify(block.input ?? {}));
  }
  return Math.max(1, tokens);
}
