import { positiveInt } from "@agentry/core";
import { normalize, type Embedder } from "./embedder.js";

/** Options for {@link HashingEmbedder}. */
export interface HashingEmbedderOptions {
  /** Vector length. @defaultValue 512 */
  dimensions?: number;
}

const STOPWORDS = new Set(
  (
    "a an the is are was were be been am do does did of in on at to for from by with and or but it its " +
    "this that these those i me my we our you your he she they them his her their what whats which who how " +
    "s t there here as so if then than too very can could would should will just about like"
  ).split(" "),
);

const WEIGHTS = { word: 1, bigram: 0.7, char: 0.35 } as const;

/**
 * A local, deterministic embedder: no network, no model. Hashed word unigrams and bigrams
 * plus character 3- and 4-grams (lowercased, punctuation stripped, stopwords dropped, light
 * stemming) with signed feature hashing into `dimensions`, L2-normalised. It captures shared
 * words and word stems, not meaning: good enough for tests and small deployments, not a
 * substitute for a real embedding model.
 */
export class HashingEmbedder implements Embedder {
  readonly dimensions: number;
  readonly id: string;

  constructor(options: HashingEmbedderOptions = {}) {
    this.dimensions = positiveInt(options.dimensions ?? 512, "dimensions");
    this.id = `hashing-v1-${this.dimensions}`;
  }

  embed(texts: string[]): Promise<Float32Array[]> {
    return Promise.resolve(texts.map((text) => this.embedOne(text)));
  }

  /** Embeds one text synchronously. */
  embedOne(text: string): Float32Array {
    const vector = new Float32Array(this.dimensions);
    const add = (feature: string, weight: number) => {
      const h = fnv1a(feature);
      const index = h % this.dimensions;
      // The top bit (unused by the index for small dims) gives the sign, so collisions cancel out on average.
      const sign = h >>> 31 === 1 ? 1 : -1;
      vector[index] = (vector[index] as number) + sign * weight;
    };
    const words = tokenize(text);
    for (let i = 0; i < words.length; i++) {
      const word = words[i] as string;
      add(`w:${word}`, WEIGHTS.word);
      if (i + 1 < words.length) add(`b:${word} ${words[i + 1] as string}`, WEIGHTS.bigram);
      const padded = `#${word}#`;
      for (const n of [3, 4]) {
        for (let j = 0; j + n <= padded.length; j++) add(`c${n}:${padded.slice(j, j + n)}`, WEIGHTS.char);
      }
    }
    return normalize(vector);
  }
}

/** Lowercase, strip punctuation, drop stopwords, stem lightly. */
export function tokenize(text: string): string[] {
  return text
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/['’]/g, "")
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0 && !STOPWORDS.has(w))
    .map(stem);
}

function stem(word: string): string {
  if (word.length > 5 && word.endsWith("ing")) return undouble(word.slice(0, -3));
  if (word.length > 4 && word.endsWith("ied")) return `${word.slice(0, -3)}y`;
  if (word.length > 4 && word.endsWith("ed")) return undouble(word.slice(0, -2));
  if (word.length > 4 && word.endsWith("ies")) return `${word.slice(0, -3)}y`;
  if (word.length > 3 && word.endsWith("s") && !word.endsWith("ss") && !word.endsWith("us"))
    return word.slice(0, -1);
  return word;
}

/** `running` → `runn` → `run`. */
function undouble(word: string): string {
  const last = word.at(-1);
  return word.length > 2 && last === word.at(-2) && last !== "l" && last !== "s" ? word.slice(0, -1) : word;
}

/** 32-bit FNV-1a over UTF-16 code units, finished with murmur3's fmix32 so every bit mixes. */
function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
