import { createHash } from "node:crypto";
import { endianness } from "node:os";
import {
  AgentryError,
  defineScripts,
  keySpace,
  newId,
  systemClock,
  type Clock,
  type KeySpace,
} from "@agentry/core";
import type { Redis } from "ioredis";
import { dot, normalize, type Embedder } from "../embedding/embedder.js";
import { keyPart, requireId } from "../internal/validate.js";
import { detectVectorSearch } from "./detect-vector-search.js";
import {
  createIndexArgs,
  DISTANCE_FIELD,
  knnSearchArgs,
  parseSearchReply,
  similarityFromDistance,
} from "./search-index.js";
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

/** How {@link RedisVectorMemory} searches. */
export type VectorSearchMode = "auto" | "brute-force" | "search";

/** Options for {@link RedisVectorMemory}. */
export interface RedisVectorMemoryOptions {
  redis: Redis;
  /**
   * Key prefix, e.g. `agentry`. On Redis Cluster use a hash-tagged one (`{agentry}`): the
   * brute-force fetch script reads many record keys in one call, which must share a slot.
   */
  prefix: string;
  /** Turns texts into vectors; records written by another embedder (another `id`) are ignored. */
  embedder: Embedder;
  /**
   * `auto` uses the server's vector search when it has one (detected once, on first use:
   * FT commands answer and the vector index can be created), else brute force; `search`
   * fails with INVALID_CONFIG on a server without it.
   * @defaultValue "auto"
   */
  mode?: VectorSearchMode;
  /** Index algorithm in search mode: HNSW (approximate, fast) or FLAT (exact). @defaultValue "HNSW" */
  algorithm?: "HNSW" | "FLAT";
  /** Vectors fetched per script call by brute force. @defaultValue 500 */
  batchSize?: number;
  /** Internal. For test use only. May change without notice. */
  _internal?: { now?: Clock["now"] };
}

const FIELDS = ["id", "ns", "text", "meta", "at"] as const;

const scripts = defineScripts<{
  /** KEYS: record hashes; ARGV[1]: embedder tag. One Float32 blob (or nil) per key. */
  fetchVectors: (keys: string[], args: [embedderTag: string]) => (Buffer | null)[];
}>(import.meta.url, { fetchVectors: { file: "./fetch-vectors.lua", replies: "buffer" } });
const LITTLE_ENDIAN = endianness() === "LE";

/**
 * Vector memory in Redis. Each record is a hash (text, metadata, createdAt and the unit
 * vector as a little-endian Float32 blob); each namespace has a set of its ids. Brute force
 * fetches the namespace's vectors in batches (one Lua call each, a few in flight) and ranks
 * them by cosine in JS: O(n) per search, about 1 s at 100k records. With a query
 * engine (Redis 8 / RediSearch) it creates one vector index per prefix and embedder and
 * answers with `FT.SEARCH … KNN` filtered by a namespace tag: the same ranking.
 */
export class RedisVectorMemory implements VectorMemory {
  private readonly redis: Redis;
  private readonly keys: KeySpace;
  private readonly embedder: Embedder;
  private readonly requested: VectorSearchMode;
  private readonly algorithm: "HNSW" | "FLAT";
  private readonly batchSize: number;
  private readonly now: () => number;
  private readonly embTag: string;
  private resolved: Promise<"brute-force" | "search"> | undefined;

  constructor(options: RedisVectorMemoryOptions) {
    this.redis = options.redis;
    this.keys = keySpace(options.prefix);
    this.embedder = options.embedder;
    this.requested = options.mode ?? "auto";
    this.algorithm = options.algorithm ?? "HNSW";
    this.batchSize = options.batchSize ?? 500;
    this.now = options._internal?.now ?? systemClock.now;
    this.embTag = tag(this.embedder.id);
  }

  /** The search path in use, detected on first call (and cached). */
  mode(): Promise<"brute-force" | "search"> {
    this.resolved ??= this.resolveMode().catch((err: unknown) => {
      this.resolved = undefined;
      throw err;
    });
    return this.resolved;
  }

  private async resolveMode(): Promise<"brute-force" | "search"> {
    if (this.requested === "brute-force") return "brute-force";
    const available = await detectVectorSearch(this.redis);
    if (!available) {
      if (this.requested === "search") {
        throw new AgentryError(
          "INVALID_CONFIG",
          "mode 'search' needs Redis 8 or the RediSearch module (FT.* commands)",
        );
      }
      return "brute-force";
    }
    try {
      await this.ensureIndex();
    } catch (err) {
      // A query engine without vector fields (RediSearch before 2.4) refuses the index.
      if (this.requested === "auto") return "brute-force";
      throw new AgentryError(
        "INVALID_CONFIG",
        `mode 'search': cannot create the vector index: ${String(err)}`,
        {
          cause: err,
        },
      );
    }
    return "search";
  }

  private get indexName(): string {
    return this.keys.key("memory", "idx", this.embTag);
  }

  /** What every record key starts with (the search index's PREFIX). */
  private recPrefix(): string {
    return this.keys.key("memory", "rec", "");
  }

  private recKey(namespace: string, id: string): string {
    return this.keys.key("memory", "rec", keyPart(namespace), keyPart(id));
  }

  private idsKey(namespace: string): string {
    return this.keys.key("memory", "ids", keyPart(namespace));
  }

  private async ensureIndex(): Promise<void> {
    try {
      await this.redis.call(
        "FT.CREATE",
        ...createIndexArgs({
          index: this.indexName,
          recordPrefix: this.recPrefix(),
          algorithm: this.algorithm,
          dimensions: this.embedder.dimensions,
        }),
      );
    } catch (err) {
      // Another process created it first.
      if (!(err instanceof Error && /already exists/i.test(err.message))) throw err;
    }
  }

  async add(input: AddMemoryInput): Promise<MemoryRecord> {
    const [record] = await this.addMany([input]);
    return record as MemoryRecord;
  }

  /** Adds many memories with one embedding call and one MULTI (for bulk loads). */
  async addMany(inputs: AddMemoryInput[]): Promise<MemoryRecord[]> {
    const metadata = inputs.map(checkAddInput);
    await this.mode();
    const vectors = await this.embedder.embed(inputs.map((i) => i.text));
    if (vectors.length !== inputs.length) {
      throw new AgentryError(
        "PROVIDER_BAD_RESPONSE",
        `Embedder returned ${vectors.length} vectors for ${inputs.length} texts`,
      );
    }
    const createdAt = this.now();
    const tx = this.redis.multi();
    const records = inputs.map((input, i): MemoryRecord => {
      const vector = vectors[i] as Float32Array;
      if (vector.length !== this.embedder.dimensions) {
        throw new AgentryError(
          "PROVIDER_BAD_RESPONSE",
          `Embedder ${this.embedder.id} returned ${vector.length} dimensions`,
        );
      }
      const record = {
        id: input.id ?? newId("mem"),
        namespace: input.namespace,
        text: input.text,
        metadata: metadata[i] as Record<string, unknown>,
        createdAt,
      };
      tx.hset(this.recKey(record.namespace, record.id), {
        id: record.id,
        ns: record.namespace,
        text: record.text,
        meta: JSON.stringify(record.metadata),
        at: String(createdAt),
        nstag: tag(record.namespace),
        embtag: this.embTag,
        vec: toBlob(normalize(Float32Array.from(vector))),
      });
      tx.sadd(this.idsKey(record.namespace), record.id);
      return record;
    });
    const results = await tx.exec();
    for (const [err] of results ?? []) if (err) throw AgentryError.from(err, "REDIS_UNAVAILABLE");
    return records.map((r) => structuredClone(r));
  }

  async search(input: SearchMemoryInput): Promise<MemoryHit[]> {
    const k = checkSearchInput(input);
    const mode = await this.mode();
    const [raw] = await this.embedder.embed([input.query]);
    const query = normalize(Float32Array.from(raw as Float32Array));
    const hits =
      mode === "search"
        ? await this.searchIndex(input.namespace, query, k)
        : await this.bruteForce(input.namespace, query, k);
    return input.minScore === undefined ? hits : hits.filter((h) => h.score >= (input.minScore as number));
  }

  private async bruteForce(namespace: string, query: Float32Array, k: number): Promise<MemoryHit[]> {
    const ids = await this.redis.smembers(this.idsKey(namespace));
    const top = new TopK<{ id: string; score: number }>(k);
    const expectedBytes = this.embedder.dimensions * 4;
    // Reply buffers are rarely 4-byte aligned: copy each into one aligned scratch vector.
    const scratch = new Float32Array(this.embedder.dimensions);
    const scratchBytes = Buffer.from(scratch.buffer);
    const batches: string[][] = [];
    for (let i = 0; i < ids.length; i += this.batchSize) batches.push(ids.slice(i, i + this.batchSize));
    // One script call per batch (one reply to parse instead of one per record), a few in flight.
    const inFlight = 4;
    for (let i = 0; i < batches.length; i += inFlight) {
      const replies = await Promise.all(
        batches.slice(i, i + inFlight).map(async (batch) => {
          const keys = batch.map((id) => this.recKey(namespace, id));
          const blobs = await scripts.fetchVectors(this.redis, keys, [this.embTag]);
          return { batch, blobs };
        }),
      );
      for (const { batch, blobs } of replies) {
        blobs.forEach((blob, j) => {
          if (!blob || blob.length !== expectedBytes) return;
          const score = dot(query, LITTLE_ENDIAN ? (blob.copy(scratchBytes), scratch) : fromBlob(blob));
          if (score >= top.floor) top.push({ id: batch[j] as string, score });
        });
      }
    }
    return this.hydrate(namespace, top.values());
  }

  private async hydrate(namespace: string, ranked: { id: string; score: number }[]): Promise<MemoryHit[]> {
    if (ranked.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const { id } of ranked) pipeline.hmget(this.recKey(namespace, id), ...FIELDS);
    const results = (await pipeline.exec()) ?? [];
    const hits: MemoryHit[] = [];
    results.forEach(([err, value], i) => {
      if (err) throw AgentryError.from(err, "REDIS_UNAVAILABLE");
      const record = parseRecord(value as (string | null)[]);
      // Deleted between ranking and fetching: skip it.
      if (record) hits.push({ ...record, score: (ranked[i] as { score: number }).score });
    });
    return hits;
  }

  private async searchIndex(namespace: string, query: Float32Array, k: number): Promise<MemoryHit[]> {
    const reply = await this.redis.call(
      "FT.SEARCH",
      ...knnSearchArgs({
        index: this.indexName,
        namespaceTag: tag(namespace),
        embedderTag: this.embTag,
        k,
        vector: toBlob(query),
        returnFields: FIELDS,
      }),
    );
    const hits: MemoryHit[] = [];
    for (const fields of parseSearchReply(reply)) {
      const record = parseRecord(FIELDS.map((f) => fields.get(f) ?? null));
      // A digest collision is all but impossible; check the namespace anyway.
      if (!record || record.namespace !== namespace) continue;
      hits.push({ ...record, score: similarityFromDistance(fields.get(DISTANCE_FIELD)) });
    }
    return hits;
  }

  async delete(namespace: string, id: string): Promise<boolean> {
    requireId(namespace, "namespace");
    requireId(id, "id");
    const results = await this.redis
      .multi()
      .del(this.recKey(namespace, id))
      .srem(this.idsKey(namespace), id)
      .exec();
    const deleted = results?.[0]?.[1];
    return deleted === 1;
  }

  async count(namespace: string): Promise<number> {
    return this.redis.scard(this.idsKey(requireId(namespace, "namespace")));
  }
}

/** A short hex digest: safe as a TAG value with no escaping. */
function tag(value: string): string {
  return createHash("sha256").update(value).digest("hex").slice(0, 32);
}

function toBlob(vector: Float32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
  const buf = Buffer.allocUnsafe(vector.length * 4);
  vector.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf;
}

function fromBlob(buf: Buffer): Float32Array {
  if (LITTLE_ENDIAN && buf.byteOffset % 4 === 0)
    return new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

function parseRecord(values: (string | null)[]): MemoryRecord | undefined {
  const [id, ns, text, meta, at] = values;
  if (id == null || ns == null || text == null || at == null) return undefined;
  let metadata: Record<string, unknown>;
  try {
    metadata = meta ? (JSON.parse(meta) as Record<string, unknown>) : {};
  } catch {
    metadata = {};
  }
  return { id, namespace: ns, text, metadata, createdAt: Number(at) };
}
