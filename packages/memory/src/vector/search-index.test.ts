import { describe, expect, it } from "vitest";
import { createIndexArgs, knnSearchArgs, parseSearchReply, similarityFromDistance } from "./search-index.js";

// The local Redis has no query engine, so the FT.* path is checked at its edges: the exact
// commands it sends and how it reads a reply shaped like RediSearch's RESP2 answer.
describe("vector search index commands", () => {
  it("creates one HNSW or FLAT cosine index over the record hashes", () => {
    expect(
      createIndexArgs({
        index: "p:memory:idx:e",
        recordPrefix: "p:memory:rec:",
        algorithm: "HNSW",
        dimensions: 512,
      }),
    ).toEqual([
      "p:memory:idx:e",
      "ON",
      "HASH",
      "PREFIX",
      "1",
      "p:memory:rec:",
      "SCHEMA",
      "nstag",
      "TAG",
      "embtag",
      "TAG",
      "vec",
      "VECTOR",
      "HNSW",
      "6",
      "TYPE",
      "FLOAT32",
      "DIM",
      "512",
      "DISTANCE_METRIC",
      "COSINE",
    ]);
  });

  it("asks for the k nearest of one namespace, sorted by distance, k of them returned", () => {
    const vector = Buffer.from(new Float32Array([0.6, 0.8]).buffer);
    const args = knnSearchArgs({
      index: "idx",
      namespaceTag: "ab12",
      embedderTag: "cd34",
      k: 7,
      vector,
      returnFields: ["id", "text"],
    });
    expect(args).toEqual([
      "idx",
      "(@nstag:{ab12} @embtag:{cd34})=>[KNN 7 @vec $blob AS vscore]",
      "PARAMS",
      "2",
      "blob",
      vector,
      "SORTBY",
      "vscore",
      "ASC",
      "RETURN",
      "3",
      "id",
      "text",
      "vscore",
      "LIMIT",
      "0",
      "7",
      "DIALECT",
      "2",
    ]);
  });

  it("reads documents in reply order and turns cosine distance into similarity", () => {
    const reply = [
      2,
      "p:memory:rec:n:a",
      ["id", "a", "vscore", "0.25"],
      "p:memory:rec:n:b",
      ["id", "b", "vscore", "1.5"],
    ];
    const docs = parseSearchReply(reply);
    expect(docs.map((d) => d.get("id"))).toEqual(["a", "b"]);
    expect(similarityFromDistance(docs[0]?.get("vscore"))).toBeCloseTo(0.75);
    expect(similarityFromDistance(docs[1]?.get("vscore"))).toBeCloseTo(-0.5);
    expect(parseSearchReply([0])).toEqual([]);
  });
});
