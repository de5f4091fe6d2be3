import type { ContentBlock, Message, ModelRequest } from "../model/types.js";

/**
 * Pre-call token estimate, the figure the budget ledger reserves against before a model call.
 *
 * It is meant to stay above what the provider then reports (`input + cacheCreationInput +
 * cacheReadInput`), so every rule rounds against us; but it is not a tokenizer, and a real one
 * can count more on code or non-English text. Budgets therefore trust it only far from a limit
 * (with a margin) and ask the provider's exact count near one (`LanguageModel.countInputTokens`). Per string, scanning runs of one
 * character class:
 * - ASCII letters/digits: 1 token per 3 characters of a run, rounded up (Claude's tokenizer
 *   averages about 4 for English words);
 * - a single space: free (tokenizers merge it into the next word); any other whitespace run
 *   (newlines, indentation): 1 token per 2 characters, rounded up;
 * - ASCII punctuation and symbols: 1 token each (tokenizers merge `{"`, `":`, `);`);
 * - other code points: 2 tokens in the Basic Multilingual Plane (accents, CJK: about 1 real),
 *   4 above it (emoji: 1 to 3 real).
 * Framing on top: 8 per request, 6 for a system prompt, 6 per message, 4 per content block,
 * 10 per tool plus 400 once when tools are offered (Anthropic adds a tool-use system prompt of
 * 346 tokens on Claude 4 models). Tool schemas and tool inputs count as their JSON text.
 *
 * How conservative: on the fixtures in `estimate-tokens.test.ts` (English, JSON tool round trips,
 * code, minified punctuation, CJK/emoji, long tool schemas, whitespace) it is 1.3–1.8× the count of
 * the fake Messages API's tokenizer-like rule, sent through the real SDK, and never below it; each
 * per-string rule is at least the fake's, so that holds for any text. Against the real tokenizer
 * expect the same order (English ≈ 4 chars/token there, 3 here). It is not a tokenizer: the real
 * count can differ per model, and images/documents are not in the contract, so not estimated.
 */

const REQUEST_OVERHEAD = 8;
const SYSTEM_OVERHEAD = 6;
const MESSAGE_OVERHEAD = 6;
const BLOCK_OVERHEAD = 4;
const TOOL_OVERHEAD = 10;
const TOOLS_PROMPT_OVERHEAD = 400;

type CharClass = "word" | "space" | "punct" | "other";

function classify(cp: number): CharClass {
  if ((cp >= 48 && cp <= 57) || (cp >= 65 && cp <= 90) || (cp >= 97 && cp <= 122)) return "word";
  if (cp === 32 || (cp >= 9 && cp <= 13)) return "space";
  if (cp < 128) return "punct";
  return "other";
}

/** Conservative token count of one string (see the module comment for the rule). */
export function estimateTextTokens(text: string): number {
  let tokens = 0;
  let runClass: CharClass | undefined;
  let runLength = 0;
  const flush = (): void => {
    if (runClass === "word") tokens += Math.ceil(runLength / 3);
    else if (runClass === "space") tokens += runLength === 1 ? 0 : Math.ceil(runLength / 2);
    else if (runClass === "punct") tokens += runLength;
    runLength = 0;
  };
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    const cls = classify(cp);
    if (cls === "other") {
      flush();
      runClass = undefined;
      tokens += cp > 0xffff ? 4 : 2;
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

function jsonTokens(value: unknown): number {
  return estimateTextTokens(JSON.stringify(value ?? {}) ?? "");
}

function blockTokens(block: ContentBlock): number {
  switch (block.type) {
    case "text":
      return BLOCK_OVERHEAD + estimateTextTokens(block.text);
    case "tool_use":
      return (
        BLOCK_OVERHEAD +
        estimateTextTokens(block.id) +
        estimateTextTokens(block.name) +
        jsonTokens(block.input)
      );
    case "tool_result":
      return (
        BLOCK_OVERHEAD +
        estimateTextTokens(block.toolUseId) +
        estimateTextTokens(block.content) +
        (block.isError ? 2 : 0)
      );
  }
}

function messageTokens(message: Message): number {
  if (typeof message.content === "string") return MESSAGE_OVERHEAD + estimateTextTokens(message.content);
  return message.content.reduce((sum, block) => sum + blockTokens(block), MESSAGE_OVERHEAD);
}

/**
 * Conservative estimate of a request's prompt tokens (system, messages of every block kind,
 * tools as JSON). Compare it with `input + cacheCreationInput + cacheReadInput` of the response.
 */
export function estimateInputTokens(request: Pick<ModelRequest, "system" | "messages" | "tools">): number {
  let tokens = REQUEST_OVERHEAD;
  if (request.system !== undefined && request.system.length > 0)
    tokens += SYSTEM_OVERHEAD + estimateTextTokens(request.system);
  for (const message of request.messages) tokens += messageTokens(message);
  const tools = request.tools ?? [];
  if (tools.length > 0) tokens += TOOLS_PROMPT_OVERHEAD;
  for (const tool of tools) {
    tokens +=
      TOOL_OVERHEAD +
      estimateTextTokens(tool.name) +
      estimateTextTokens(tool.description) +
      jsonTokens(tool.inputSchema);
  }
  return tokens;
}

/** Worst-case tokens of one call: the input estimate plus `maxTokens` of output. */
export function estimateRequestTokens(
  request: Pick<ModelRequest, "system" | "messages" | "tools" | "maxTokens">,
): number {
  return estimateInputTokens(request) + request.maxTokens;
}
