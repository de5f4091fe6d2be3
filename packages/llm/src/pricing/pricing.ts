import { AgentryError } from "@agentry/core";
import { z } from "zod";
import type { Usage } from "../model/types.js";
import { CLAUDE_MODEL_ALIASES, CLAUDE_PRICING, PRICING_AS_OF, type ModelRates } from "./pricing-table.js";

/** Options for {@link createPricing}. */
export interface PricingOptions {
  /** Rates that replace or extend the built-in table, keyed by model id. */
  overrides?: Record<string, ModelRates>;
  /** Extra alias → canonical id entries. */
  aliases?: Record<string, string>;
  /** Date the rates were read; set it when overrides carry newer prices. @defaultValue {@link PRICING_AS_OF} */
  asOf?: string;
}

/** Prices model calls in integer micro-USD. */
export interface Pricing {
  /** The date the rates were read. */
  readonly asOf: string;
  /** Canonical id for a model id (alias or dated id). Throws `UNKNOWN_MODEL`. */
  resolve(model: string): string;
  /** Rates of a model. Throws `UNKNOWN_MODEL`, never answers zero for a model it does not know. */
  rates(model: string): ModelRates;
  /**
   * Cost of one call in micro-USD: `input` at the input rate, `cacheCreationInput` at the cache
   * write rate, `cacheReadInput` at the cache read rate, `output` at the output rate. The three
   * input fields are disjoint (the API reports them so), so nothing is counted twice. The exact
   * sum is rounded UP once, so spend is never under-counted (at most 1 micro-USD over).
   */
  costMicroUsd(model: string, usage: Usage): number;
  /**
   * Worst-case cost of a call before it is made, for budget reservations: every input token at
   * the highest input-side rate (the cache write rate, when higher than input) plus `maxTokens`
   * of output, at long-context rates when `inputTokens` crosses the model's threshold. Rounded up.
   */
  maxCostMicroUsd(model: string, inputTokens: number, maxTokens: number): number;
  /** Every canonical model id priced. */
  models(): string[];
}

const rateSchema = z.number().finite().nonnegative();
const modelRatesSchema = z.object({
  input: rateSchema,
  output: rateSchema,
  cacheWrite: rateSchema,
  cacheRead: rateSchema,
  longContext: z
    .object({
      thresholdTokens: z.number().int().positive(),
      input: rateSchema,
      output: rateSchema,
      cacheWrite: rateSchema,
      cacheRead: rateSchema,
    })
    .optional(),
});

/** 1 USD per million tokens = 1 micro-USD per token = 1e6 pico-USD per token. */
const PICO_PER_MICRO = 1_000_000n;

function picoRate(usdPerMTok: number, model: string): bigint {
  const scaled = Math.round(usdPerMTok * 1_000_000);
  if (Math.abs(scaled - usdPerMTok * 1_000_000) > 1e-3) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `Price ${usdPerMTok} for ${model} has more than 6 decimal places`,
    );
  }
  return BigInt(scaled);
}

function tokens(n: number, field: string): bigint {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new AgentryError("INVALID_INPUT", `Usage ${field} must be a non-negative integer, got ${n}`);
  return BigInt(n);
}

function ceilMicro(pico: bigint): number {
  return Number((pico + PICO_PER_MICRO - 1n) / PICO_PER_MICRO);
}

/** Builds a {@link Pricing} from the built-in dated table plus overrides. Invalid overrides throw `INVALID_CONFIG`. */
export function createPricing(options: PricingOptions = {}): Pricing {
  const table: Record<string, ModelRates> = { ...CLAUDE_PRICING };
  for (const [model, rates] of Object.entries(options.overrides ?? {})) {
    const parsed = modelRatesSchema.safeParse(rates);
    if (!parsed.success) {
      throw new AgentryError(
        "INVALID_CONFIG",
        `Invalid price override for ${model}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      );
    }
    table[model] = parsed.data;
  }
  const aliases: Record<string, string> = { ...CLAUDE_MODEL_ALIASES, ...options.aliases };
  const asOf = options.asOf ?? PRICING_AS_OF;

  const resolve = (model: string): string => {
    if (table[model]) return model;
    const alias = aliases[model];
    if (alias !== undefined && table[alias]) return alias;
    const dated = /^(.+?)(?:-|@)\d{8}$/.exec(model);
    if (dated?.[1] !== undefined) {
      const base = dated[1];
      if (table[base]) return base;
      const baseAlias = aliases[base];
      if (baseAlias !== undefined && table[baseAlias]) return baseAlias;
    }
    throw new AgentryError(
      "UNKNOWN_MODEL",
      `No price known for model "${model}" (pricing as of ${asOf}); add it with createPricing({ overrides })`,
      {
        details: { model, asOf },
      },
    );
  };

  const rates = (model: string): ModelRates => table[resolve(model)] as ModelRates;

  const effective = (r: ModelRates, promptTokens: number): Omit<ModelRates, "longContext"> =>
    r.longContext !== undefined && promptTokens > r.longContext.thresholdTokens ? r.longContext : r;

  return {
    asOf,
    resolve,
    rates,
    costMicroUsd(model, usage) {
      const canonical = resolve(model);
      const r = table[canonical] as ModelRates;
      const prompt = usage.input + usage.cacheCreationInput + usage.cacheReadInput;
      const e = effective(r, prompt);
      const pico =
        tokens(usage.input, "input") * picoRate(e.input, canonical) +
        tokens(usage.cacheCreationInput, "cacheCreationInput") * picoRate(e.cacheWrite, canonical) +
        tokens(usage.cacheReadInput, "cacheReadInput") * picoRate(e.cacheRead, canonical) +
        tokens(usage.output, "output") * picoRate(e.output, canonical);
      return ceilMicro(pico);
    },
    maxCostMicroUsd(model, inputTokens, maxTokens) {
      const canonical = resolve(model);
      const e = effective(table[canonical] as ModelRates, inputTokens);
      const inputSide = picoRate(Math.max(e.input, e.cacheWrite), canonical);
      return ceilMicro(
        tokens(inputTokens, "inputTokens") * inputSide +
          tokens(maxTokens, "maxTokens") * picoRate(e.output, canonical),
      );
    },
    models: () => Object.keys(table).sort(),
  };
}

/** The built-in table, without overrides. */
export const defaultPricing: Pricing = createPricing();

/** {@link Pricing.costMicroUsd} on the built-in table. */
export function costMicroUsd(model: string, usage: Usage): number {
  return defaultPricing.costMicroUsd(model, usage);
}

/** {@link Pricing.maxCostMicroUsd} on the built-in table. */
export function maxCostMicroUsd(model: string, inputTokens: number, maxTokens: number): number {
  return defaultPricing.maxCostMicroUsd(model, inputTokens, maxTokens);
}
