import { AgentryError } from "@agentry/core";
import { requireId } from "../internal/validate.js";

/** One stored memory. */
export interface MemoryRecord {
  id: string;
  namespace: string;
  text: string;
  metadata: Record<string, unknown>;
  createdAt: number;
}

/** A search result; `score` is cosine similarity in [-1, 1], higher is closer. */
export interface MemoryHit extends MemoryRecord {
  score: number;
}

/** Input of {@link VectorMemory.add}. */
export interface AddMemoryInput {
  /** Any string, e.g. `tenant:acme:user:u1`; searches never cross namespaces. */
  namespace: string;
  text: string;
  /** JSON-serialisable. @defaultValue {} */
  metadata?: Record<string, unknown>;
  /** An existing id is replaced. @defaultValue a new `mem_…` id */
  id?: string;
}

/** Input of {@link VectorMemory.search}. */
export interface SearchMemoryInput {
  namespace: string;
  query: string;
  /** @defaultValue 5 */
  k?: number;
  /** Hits below this cosine score are dropped. @defaultValue no minimum */
  minScore?: number;
}

/** Texts searchable by meaning within a namespace. */
export interface VectorMemory {
  add(input: {
    namespace: string;
    text: string;
    metadata?: Record<string, unknown>;
    id?: string;
  }): Promise<MemoryRecord>;
  /** Cosine, best first, default k 5. */
  search(input: { namespace: string; query: string; k?: number; minScore?: number }): Promise<MemoryHit[]>;
  delete(namespace: string, id: string): Promise<boolean>;
  count(namespace: string): Promise<number>;
}

export const DEFAULT_K = 5;

/** Checks add input; returns the metadata to store. */
export function checkAddInput(input: AddMemoryInput): Record<string, unknown> {
  requireId(input.namespace, "namespace");
  if (typeof input.text !== "string" || input.text.trim().length === 0) {
    throw new AgentryError("INVALID_INPUT", "text must be a non-empty string");
  }
  if (input.id !== undefined) requireId(input.id, "id");
  const metadata = input.metadata ?? {};
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    throw new AgentryError("INVALID_INPUT", "metadata must be an object");
  }
  try {
    JSON.stringify(metadata);
  } catch (err) {
    throw new AgentryError("INVALID_INPUT", "metadata must be JSON-serialisable", { cause: err });
  }
  return metadata;
}

/** Checks search input; returns k. */
export function checkSearchInput(input: SearchMemoryInput): number {
  requireId(input.namespace, "namespace");
  if (typeof input.query !== "string") throw new AgentryError("INVALID_INPUT", "query must be a string");
  const k = input.k ?? DEFAULT_K;
  if (!Number.isInteger(k) || k < 1 || k > 1000) {
    throw new AgentryError("INVALID_INPUT", `k must be an integer from 1 to 1000 (got ${k})`);
  }
  return k;
}

/** Keeps the best `k` hits, best first (ties by id, for stable results). */
export class TopK<T extends { score: number; id: string }> {
  private readonly items: T[] = [];
  constructor(private readonly k: number) {}

  /** Lowest score still kept, or -Infinity while not full. */
  get floor(): number {
    return this.items.length < this.k ? Number.NEGATIVE_INFINITY : (this.items.at(-1) as T).score;
  }

  push(item: T): void {
    const last = this.items.at(-1);
    if (this.items.length >= this.k && last && compare(item, last) >= 0) return;
    let i = this.items.length;
    while (i > 0 && compare(item, this.items[i - 1] as T) < 0) i--;
    this.items.splice(i, 0, item);
    if (this.items.length > this.k) this.items.pop();
  }

  values(): T[] {
    return this.items;
  }
}

function compare(a: { score: number; id: string }, b: { score: number; id: string }): number {
  return b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
