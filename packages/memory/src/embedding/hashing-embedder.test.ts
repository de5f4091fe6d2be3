import { describe, expect, it } from "vitest";
import { dot } from "./embedder.js";
import { HashingEmbedder, tokenize } from "./hashing-embedder.js";

/** [query, paraphrase, unrelated] */
const TRIPLES: [string, string, string][] = [
  ["What's the weather like in Paris?", "Is it raining in Paris today?", "Quarterly revenue grew by 12%"],
  [
    "How do I reset my password?",
    "I forgot my password and need to reset it",
    "The cat sat on the warm windowsill",
  ],
  [
    "Book a flight to Tokyo next Monday",
    "I need flights to Tokyo on Monday",
    "Add two cups of flour to the bowl",
  ],
  [
    "The user prefers dark mode in the editor",
    "Editor preference: dark mode enabled",
    "Shipping takes five business days",
  ],
  ["Cancel my subscription", "Please cancel the subscription I have", "What time does the museum open?"],
  [
    "Deploy the service to production",
    "Deploying services to the production cluster",
    "My favourite colour is green",
  ],
];

describe("HashingEmbedder", () => {
  const embedder = new HashingEmbedder();

  it("ranks a paraphrase above an unrelated text", async () => {
    for (const [query, paraphrase, unrelated] of TRIPLES) {
      const [q, p, u] = (await embedder.embed([query, paraphrase, unrelated])) as [
        Float32Array,
        Float32Array,
        Float32Array,
      ];
      expect(dot(q, p), `${query} / ${paraphrase} vs ${unrelated}`).toBeGreaterThan(dot(q, u) + 0.1);
    }
  });

  it("is deterministic, unit length and of the configured size", async () => {
    const small = new HashingEmbedder({ dimensions: 64 });
    const [a, b] = (await small.embed(["Hello, world!", "Hello, world!"])) as [Float32Array, Float32Array];
    expect(a).toHaveLength(64);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(dot(a, a)).toBeCloseTo(1, 5);
    expect(small.id).toBe("hashing-v1-64");
    expect(embedder.dimensions).toBe(512);
  });

  it("gives an all-stopword or empty text a zero vector instead of NaN", async () => {
    const [v] = (await embedder.embed(["the of and"])) as [Float32Array];
    expect(Array.from(v).every((x) => x === 0)).toBe(true);
  });

  it("normalises case, punctuation and simple suffixes", () => {
    expect(tokenize("Raining, RAINED; rains!")).toEqual(["rain", "rain", "rain"]);
    expect(tokenize("Flights booked")).toEqual(["flight", "book"]);
  });
});
