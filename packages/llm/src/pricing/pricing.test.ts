import { AgentryError } from "@agentry/core";
import { describe, expect, it } from "vitest";
import type { Usage } from "../model/types.js";
import { PRICING_AS_OF } from "./pricing-table.js";
import { costMicroUsd, createPricing, defaultPricing, maxCostMicroUsd } from "./pricing.js";

const usage = (u: Partial<Usage>): Usage => ({
  input: 0,
  output: 0,
  cacheCreationInput: 0,
  cacheReadInput: 0,
  ...u,
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return AgentryError.isInstance(err) ? err.code : `not an AgentryError: ${String(err)}`;
  }
  return undefined;
}

describe("pricing", () => {
  it("carries the date the table was read", () => {
    expect(PRICING_AS_OF).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(defaultPricing.asOf).toBe(PRICING_AS_OF);
  });

  it("prices every usage field at its own rate (sonnet 4.5, hand-computed)", () => {
    // $3 input, $3.75 cache write, $0.30 cache read, $15 output per MTok = µUSD per token.
    // 1000×3 + 2000×3.75 + 10000×0.30 + 500×15 = 3000 + 7500 + 3000 + 7500 = 21000 µUSD
    expect(
      costMicroUsd(
        "claude-sonnet-4-5",
        usage({ input: 1000, cacheCreationInput: 2000, cacheReadInput: 10_000, output: 500 }),
      ),
    ).toBe(21_000);
  });

  it("prices opus 4.1 with fractional cache rates exactly (hand-computed)", () => {
    // $15 / $75 / $18.75 / $1.50:
    // 1234×15 = 18510; 567×75 = 42525; 890×18.75 = 16687.5; 4321×1.5 = 6481.5 → 84204 µUSD
    expect(
      costMicroUsd(
        "claude-opus-4-1",
        usage({ input: 1234, output: 567, cacheCreationInput: 890, cacheReadInput: 4321 }),
      ),
    ).toBe(84_204);
  });

  it("prices opus 4.5 and later at the cheaper tier, haiku 4.5 at its own", () => {
    // 1000×5 + 1000×25 = 30000
    expect(costMicroUsd("claude-opus-4-5", usage({ input: 1000, output: 1000 }))).toBe(30_000);
    expect(costMicroUsd("claude-opus-4-8", usage({ input: 1000, output: 1000 }))).toBe(30_000);
    // 1000×1 + 100×1.25 + 1000×0.10 + 200×5 = 1000 + 125 + 100 + 1000 = 2225
    expect(
      costMicroUsd(
        "claude-haiku-4-5",
        usage({ input: 1000, cacheCreationInput: 100, cacheReadInput: 1000, output: 200 }),
      ),
    ).toBe(2225);
  });

  it("rounds the exact total up once, never per field, and never down", () => {
    // haiku 3.5: $0.80 input, $0.08 cache read. 3×0.8 + 7×0.08 = 2.4 + 0.56 = 2.96 → 3 (per-field ceil would say 4)
    expect(costMicroUsd("claude-3-5-haiku", usage({ input: 3, cacheReadInput: 7 }))).toBe(3);
    // 1 token of haiku 3.5 input costs 0.8 µUSD: charged 1, not 0
    expect(costMicroUsd("claude-3-5-haiku", usage({ input: 1 }))).toBe(1);
    expect(costMicroUsd("claude-3-5-haiku", usage({}))).toBe(0);
  });

  it("resolves dated and aliased ids to their base model, without prefix confusion", () => {
    const u = usage({ input: 1000, output: 1000 });
    expect(costMicroUsd("claude-sonnet-4-5-20250929", u)).toBe(costMicroUsd("claude-sonnet-4-5", u));
    expect(costMicroUsd("claude-sonnet-4-5@20250929", u)).toBe(costMicroUsd("claude-sonnet-4-5", u));
    expect(defaultPricing.resolve("claude-opus-4-20250514")).toBe("claude-opus-4");
    expect(costMicroUsd("claude-opus-4-20250514", u)).toBe(90_000); // 15 + 75 per token ×1000, not the 4.5 tier
    expect(defaultPricing.resolve("claude-opus-4-5-20251101")).toBe("claude-opus-4-5");
    expect(defaultPricing.resolve("claude-3-5-haiku-20241022")).toBe("claude-3-5-haiku");
    expect(defaultPricing.resolve("claude-haiku-3-5")).toBe("claude-3-5-haiku");
    expect(defaultPricing.resolve("claude-haiku-4-5-20251001")).toBe("claude-haiku-4-5");
  });

  it("refuses an unknown model with UNKNOWN_MODEL instead of pricing it at zero", () => {
    expect(codeOf(() => costMicroUsd("gpt-4o", usage({})))).toBe("UNKNOWN_MODEL");
    expect(codeOf(() => costMicroUsd("claude-sonnet-9", usage({ input: 10 })))).toBe("UNKNOWN_MODEL");
    expect(codeOf(() => maxCostMicroUsd("claude-nope-20250101", 10, 10))).toBe("UNKNOWN_MODEL");
  });

  it("applies long-context rates to every token above the threshold (sonnet 4.5)", () => {
    // prompt = 150000 + 60000 = 210000 > 200000 → $6 / $0.60 / $22.50:
    // 150000×6 + 60000×0.6 + 1000×22.5 = 900000 + 36000 + 22500 = 958500
    expect(
      costMicroUsd("claude-sonnet-4-5", usage({ input: 150_000, cacheReadInput: 60_000, output: 1000 })),
    ).toBe(958_500);
    // at the threshold the normal rates hold: 200000×3 = 600000
    expect(costMicroUsd("claude-sonnet-4-5", usage({ input: 200_000 }))).toBe(600_000);
  });

  it("maxCost prices all input at the highest input-side rate plus maxTokens of output", () => {
    // sonnet 4.5: 10000 × 3.75 (cache write > input) + 1000 × 15 = 37500 + 15000
    expect(maxCostMicroUsd("claude-sonnet-4-5", 10_000, 1000)).toBe(52_500);
    // never below the real cost of any split of the same prompt with at most maxTokens output
    const splits: Usage[] = [
      usage({ input: 10_000, output: 1000 }),
      usage({ cacheCreationInput: 10_000, output: 1000 }),
      usage({ input: 2000, cacheCreationInput: 5000, cacheReadInput: 3000, output: 999 }),
    ];
    for (const split of splits)
      expect(maxCostMicroUsd("claude-sonnet-4-5", 10_000, 1000)).toBeGreaterThanOrEqual(
        costMicroUsd("claude-sonnet-4-5", split),
      );
    // above the long-context threshold: 250000 × 7.5 + 1000 × 22.5
    expect(maxCostMicroUsd("claude-sonnet-4-5", 250_000, 1000)).toBe(1_897_500);
  });

  it("takes overrides and new models from config, and validates them", () => {
    const pricing = createPricing({
      overrides: {
        "claude-sonnet-4-5": { input: 2, output: 10, cacheWrite: 2.5, cacheRead: 0.2 },
        "acme-llm": { input: 0.123456, output: 1, cacheWrite: 0.2, cacheRead: 0.01 },
      },
      aliases: { "acme-latest": "acme-llm" },
      asOf: "2026-12-01",
    });
    expect(pricing.asOf).toBe("2026-12-01");
    // 1000×2 + 1000×10 = 12000
    expect(pricing.costMicroUsd("claude-sonnet-4-5-20250929", usage({ input: 1000, output: 1000 }))).toBe(
      12_000,
    );
    // 1000 × 0.123456 = 123.456 → 124
    expect(pricing.costMicroUsd("acme-latest", usage({ input: 1000 }))).toBe(124);
    expect(pricing.models()).toContain("acme-llm");
    // the default table is untouched
    expect(costMicroUsd("claude-sonnet-4-5", usage({ input: 1000, output: 1000 }))).toBe(18_000);
    expect(
      codeOf(() =>
        createPricing({ overrides: { bad: { input: -1, output: 1, cacheWrite: 1, cacheRead: 1 } } }),
      ),
    ).toBe("INVALID_CONFIG");
  });

  it("rejects usage that is not a non-negative integer", () => {
    expect(codeOf(() => costMicroUsd("claude-sonnet-4-5", usage({ input: -5 })))).toBe("INVALID_INPUT");
    expect(codeOf(() => costMicroUsd("claude-sonnet-4-5", usage({ output: 1.5 })))).toBe("INVALID_INPUT");
  });
});
