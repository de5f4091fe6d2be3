/**
 * Anthropic list prices, USD per million tokens, as published on {@link PRICING_AS_OF}.
 * Override per deployment with `createPricing({ overrides })` when prices change or a
 * contract rate applies. Batch discounts, 1-hour cache writes, data-residency and fast-mode
 * multipliers are not modelled: Agentry sends synchronous requests with 5-minute caching.
 */

/** The date the table below was read. */
export const PRICING_AS_OF = "2026-11-25";

/** Rates of one model in USD per million tokens. */
export interface ModelRates {
  input: number;
  output: number;
  /** Writing the prompt cache (5-minute TTL), billed instead of `input` for those tokens. */
  cacheWrite: number;
  /** Reading the prompt cache, billed instead of `input` for those tokens. */
  cacheRead: number;
  /**
   * Higher rates that apply to every token of a request whose prompt (input + cache write +
   * cache read) exceeds `thresholdTokens` (Sonnet 4 / 4.5 with the 1M context window).
   */
  longContext?: {
    thresholdTokens: number;
    input: number;
    output: number;
    cacheWrite: number;
    cacheRead: number;
  };
}

const OPUS_4_5_TIER: ModelRates = { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 };
const OPUS_4_TIER: ModelRates = { input: 15, output: 75, cacheWrite: 18.75, cacheRead: 1.5 };
const SONNET_4_TIER: ModelRates = { input: 3, output: 15, cacheWrite: 3.75, cacheRead: 0.3 };
const SONNET_LONG_CONTEXT = {
  thresholdTokens: 200_000,
  input: 6,
  output: 22.5,
  cacheWrite: 7.5,
  cacheRead: 0.6,
};

/** Canonical model id → rates. */
export const CLAUDE_PRICING: Readonly<Record<string, ModelRates>> = Object.freeze({
  "claude-opus-4-8": OPUS_4_5_TIER,
  "claude-opus-4-7": OPUS_4_5_TIER,
  "claude-opus-4-6": OPUS_4_5_TIER,
  "claude-opus-4-5": OPUS_4_5_TIER,
  "claude-opus-4-1": OPUS_4_TIER,
  "claude-opus-4": OPUS_4_TIER,
  "claude-sonnet-4-6": SONNET_4_TIER,
  "claude-sonnet-4-5": { ...SONNET_4_TIER, longContext: SONNET_LONG_CONTEXT },
  "claude-sonnet-4": { ...SONNET_4_TIER, longContext: SONNET_LONG_CONTEXT },
  "claude-haiku-4-5": { input: 1, output: 5, cacheWrite: 1.25, cacheRead: 0.1 },
  "claude-3-5-haiku": { input: 0.8, output: 4, cacheWrite: 1, cacheRead: 0.08 },
});

/**
 * Ids that are not "canonical id + date" but name a priced model. Dated ids
 * (`claude-sonnet-4-5-20250929`, `claude-sonnet-4-5@20250929`) resolve without an entry here.
 */
export const CLAUDE_MODEL_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  "claude-opus-4-0": "claude-opus-4",
  "claude-sonnet-4-0": "claude-sonnet-4",
  "claude-3-5-haiku-latest": "claude-3-5-haiku",
  "claude-haiku-3-5": "claude-3-5-haiku",
});
