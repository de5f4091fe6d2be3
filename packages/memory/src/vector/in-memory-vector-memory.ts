import { newId, systemClock, type Clock } from "@agentry/core";
import { dot, normalize, type Embedder } from "../embedding/embedder.js";
import { HashingEmbedder } from "../embedding/hashing-embedder.js";
import { requireId } from "../internal/validate.js";
import {
  checkAddInput,
  checkSearchInput,
  TopK,
  type AddMemoryInput,
  type MemoryHit,
  type MemoryRecord,
  type SearchMemoryInput,
  type VectorMemory,
} from "./vector-memory.js";

/** Options for {@link InMemoryVectorMemory}. */
export interface InMemoryVectorMemoryOptions {
  /** @defaultValue a {@link HashingEmbedder} */
  embedder?: Embedder;
  /** Internal. For test use only. May change without notice. */
  _internal?: { now?: Clock["now"] };
}

/** The reference {@link VectorMemory}: brute-force cosine over one process's memory. */
export class InMemoryVectorMemory implements VectorMemory {
  private readonly embedder: Embedder;
  private readonly now: () => number;
  private readonly namespaces = new Map<
    string,
    Map<string, { record: MemoryRecord; vector: Float32Array }>
  >();

  constructor(options: InMemoryVectorMemoryOptions = {}) {
    this.embedder = options.embedder ?? new HashingEmbedder();
    this.now = options._internal?.now ?? systemClock.now;
  }

  async add(input: AddMemoryInput): Promise<MemoryRecord> {
    const metadata = checkAddInput(input);
    const [vector] = await this.embedder.embed([input.text]);
    const record: MemoryRecord = {
      id: input.id ?? newId("mem"),
      namespace: input.namespace,
      text: input.text,
      metadata: structuredClone(metadata),
      createdAt: this.now(),
    };
    let ns = this.namespaces.get(input.namespace);
    if (!ns) this.namespaces.set(input.namespace, (ns = new Map()));
    ns.set(record.id, { record, vector: normalize(Float32Array.from(vector as Float32Array)) });
    return structuredClone(record);
  }

  async search(input: SearchMemoryInput): Promise<MemoryHit[]> {
    const k = checkSearchInput(input);
    const ns = this.namespaces.get(input.namespace);
    if (!ns || ns.size === 0) return [];
    const [raw] = await this.embedder.embed([input.query]);
    const query = normalize(Float32Array.from(raw as Float32Array));
    const top = new TopK<MemoryHit>(k);
    for (const { record, vector } of ns.values()) {
      const score = dot(query, vector);
      if (input.minScore !== undefined && score < input.minScore) continue;
      if (score < top.floor) continue;
      top.push({ ...structuredClone(record), score });
    }
    return top.values();
  }

  async delete(namespace: string, id: string): Promise<boolean> {
    requireId(namespace, "namespace");
    requireId(id, "id");
    return this.namespaces.get(namespace)?.delete(id) ?? false;
  }

  async count(namespace: string): Promise<number> {
    return this.namespaces.get(requireId(namespace, "namespace"))?.size ?? 0;
  }
}
