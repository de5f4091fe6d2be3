import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { HashingEmbedder } from "../embedding/hashing-embedder.js";
import { vectorMemoryConformance } from "../testing.js";
import { detectVectorSearch } from "./detect-vector-search.js";
import { InMemoryVectorMemory } from "./in-memory-vector-memory.js";
import { RedisVectorMemory } from "./redis-vector-memory.js";

const redis = useTestRedis("vectors");
const embedder = new HashingEmbedder();

vectorMemoryConformance(
  "redis (auto)",
  () => new RedisVectorMemory({ redis: redis.client(), prefix: redis.freshPrefix("vec"), embedder }),
);
vectorMemoryConformance(
  "redis (brute-force, small batches)",
  () =>
    new RedisVectorMemory({
      redis: redis.client(),
      prefix: redis.freshPrefix("vec"),
      embedder,
      mode: "brute-force",
      batchSize: 3,
    }),
);
vectorMemoryConformance("in-memory", () => new InMemoryVectorMemory({ embedder }));

describe("RedisVectorMemory on a server without vector search", () => {
  it("detects no query engine and picks brute force in auto mode", async () => {
    const client = redis.client();
    const info = await client.info("server");
    const version = /redis_version:(\d+)/.exec(info)?.[1];
    const hasSearch = await detectVectorSearch(client);
    // The local test server is Redis 7 without the module; on Redis 8 / Stack the other branch holds.
    if (Number(version) < 8 && !hasSearch) {
      const memory = new RedisVectorMemory({ redis: client, prefix: redis.freshPrefix("mode"), embedder });
      expect(await memory.mode()).toBe("brute-force");
    } else {
      expect(hasSearch).toBe(true);
    }
  });

  it("mode 'search' fails with INVALID_CONFIG where there is no query engine", async () => {
    const client = redis.client();
    if (await detectVectorSearch(client)) return;
    const memory = new RedisVectorMemory({
      redis: client,
      prefix: redis.freshPrefix("mode"),
      embedder,
      mode: "search",
    });
    await expect(memory.search({ namespace: "n", query: "q" })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
    });
  });

  it("stores the vector as a Float32 blob beside the record", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("blob");
    const memory = new RedisVectorMemory({ redis: client, prefix, embedder, mode: "brute-force" });
    const record = await memory.add({ namespace: "tenant:a", text: "hello world", id: "r1" });
    const blob = await client.hgetBuffer(`${prefix}:memory:rec:tenant%3Aa:r1`, "vec");
    expect(blob?.length).toBe(embedder.dimensions * 4);
    expect(await client.smembers(`${prefix}:memory:ids:tenant%3Aa`)).toEqual([record.id]);
  });

  it("ignores vectors written by a different embedder", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("emb");
    const other = new RedisVectorMemory({
      redis: client,
      prefix,
      embedder: new HashingEmbedder({ dimensions: 256 }),
    });
    await other.add({ namespace: "n", text: "weather in Paris" });
    const memory = new RedisVectorMemory({ redis: client, prefix, embedder });
    expect(await memory.search({ namespace: "n", query: "weather in Paris" })).toEqual([]);
  });
});
