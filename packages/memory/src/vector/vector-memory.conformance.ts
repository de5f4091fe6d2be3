import { isAgentryError } from "@agentry/core";
import { describe, expect, it } from "vitest";
import type { VectorMemory } from "./vector-memory.js";

/** Makes a fresh, empty memory (with the default hashing embedder unless the backend needs another). */
export type VectorMemoryFactory = () => Promise<VectorMemory> | VectorMemory;

const NS = "tenant:acme:user:u1";

/** The {@link VectorMemory} contract. Every backend runs it. */
export function vectorMemoryConformance(name: string, factory: VectorMemoryFactory): void {
  describe(`VectorMemory conformance: ${name}`, () => {
    it("adds a record and returns it with an id, metadata and createdAt", async () => {
      const memory = await factory();
      const record = await memory.add({
        namespace: NS,
        text: "The user prefers metric units",
        metadata: { source: "chat", n: 1 },
      });
      expect(record).toMatchObject({
        namespace: NS,
        text: "The user prefers metric units",
        metadata: { source: "chat", n: 1 },
      });
      expect(record.id).toBeTruthy();
      expect(record.createdAt).toBeGreaterThan(0);
      expect(await memory.count(NS)).toBe(1);
      const [hit] = await memory.search({ namespace: NS, query: "metric units" });
      expect(hit).toMatchObject({ ...record, score: expect.any(Number) as number });
    });

    it("ranks by cosine, best first, and a paraphrase above unrelated text", async () => {
      const memory = await factory();
      await memory.add({ namespace: NS, text: "Quarterly revenue grew by 12%", id: "finance" });
      await memory.add({ namespace: NS, text: "Is it raining in Paris today?", id: "paris" });
      await memory.add({ namespace: NS, text: "My cat is called Felix", id: "cat" });
      const hits = await memory.search({ namespace: NS, query: "What's the weather like in Paris?" });
      expect(hits[0]?.id).toBe("paris");
      const scores = hits.map((h) => h.score);
      expect(scores).toEqual([...scores].sort((a, b) => b - a));
      expect(hits.every((h) => h.score <= 1 + 1e-6 && h.score >= -1 - 1e-6)).toBe(true);
    });

    it("defaults k to 5 and honours k and minScore", async () => {
      const memory = await factory();
      for (let i = 0; i < 8; i++)
        await memory.add({ namespace: NS, text: `note number ${i} about gardening tomatoes` });
      await memory.add({ namespace: NS, text: "Quarterly revenue grew by 12%", id: "finance" });
      expect(await memory.search({ namespace: NS, query: "gardening tomatoes" })).toHaveLength(5);
      expect(await memory.search({ namespace: NS, query: "gardening tomatoes", k: 2 })).toHaveLength(2);
      const all = await memory.search({ namespace: NS, query: "gardening tomatoes", k: 20 });
      expect(all).toHaveLength(9);
      expect(all.at(-1)?.id).toBe("finance");
      const filtered = await memory.search({
        namespace: NS,
        query: "gardening tomatoes",
        k: 20,
        minScore: 0.2,
      });
      expect(filtered.map((h) => h.id)).not.toContain("finance");
      expect(filtered.every((h) => h.score >= 0.2)).toBe(true);
    });

    it("never returns another namespace's records, whatever characters the namespaces hold", async () => {
      const memory = await factory();
      const spaces = [NS, "tenant:acme:user:u2", "tenant:acme:user", "weird {ns}*:%20 é"];
      for (const ns of spaces) await memory.add({ namespace: ns, text: `weather in Paris for ${ns}` });
      for (const ns of spaces) {
        const hits = await memory.search({ namespace: ns, query: "weather in Paris", k: 10 });
        expect(hits.map((h) => h.namespace)).toEqual([ns]);
        expect(await memory.count(ns)).toBe(1);
      }
      expect(await memory.search({ namespace: "empty", query: "weather" })).toEqual([]);
      expect(await memory.count("empty")).toBe(0);
    });

    it("an add with an existing id replaces the record", async () => {
      const memory = await factory();
      await memory.add({ namespace: NS, id: "pref", text: "likes tea" });
      await memory.add({ namespace: NS, id: "pref", text: "likes coffee", metadata: { v: 2 } });
      expect(await memory.count(NS)).toBe(1);
      const [hit] = await memory.search({ namespace: NS, query: "coffee" });
      expect(hit).toMatchObject({ id: "pref", text: "likes coffee", metadata: { v: 2 } });
    });

    it("delete removes a record and says whether it existed", async () => {
      const memory = await factory();
      const record = await memory.add({ namespace: NS, text: "remember the milk" });
      expect(await memory.delete("other", record.id)).toBe(false);
      expect(await memory.delete(NS, record.id)).toBe(true);
      expect(await memory.delete(NS, record.id)).toBe(false);
      expect(await memory.count(NS)).toBe(0);
      expect(await memory.search({ namespace: NS, query: "milk" })).toEqual([]);
    });

    it("rejects bad input with INVALID_INPUT", async () => {
      const memory = await factory();
      const attempts: (() => Promise<unknown>)[] = [
        () => memory.add({ namespace: "", text: "x" }),
        () => memory.add({ namespace: NS, text: "" }),
        () => memory.add({ namespace: NS, text: "x", metadata: [] as unknown as Record<string, unknown> }),
        () => memory.search({ namespace: NS, query: "x", k: 0 }),
        () => memory.search({ namespace: 7 as unknown as string, query: "x" }),
        () => memory.count(""),
      ];
      for (const attempt of attempts) {
        const err = await attempt().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isAgentryError(err, "INVALID_INPUT"), String(err)).toBe(true);
      }
    });
  });
}
