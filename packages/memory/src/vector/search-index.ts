/**
 * The query-engine path of RedisVectorMemory (Redis 8 / Redis Stack / RediSearch): command
 * arguments and reply parsing, kept pure so they can be checked without the module.
 * The commands it builds: FT.CREATE … SCHEMA <f> VECTOR <ALG> <n> TYPE
 * FLOAT32 DIM <d> DISTANCE_METRIC COSINE, and FT.SEARCH "<filter>=>[KNN k @f $blob AS d]"
 * PARAMS 2 blob <bytes> SORTBY d LIMIT 0 k DIALECT 2 (LIMIT, because the default is 10).
 */

/** Field that holds the KNN distance in search replies. */
export const DISTANCE_FIELD = "vscore";

/** Arguments of FT.CREATE for one index over the record hashes under `recordPrefix`. */
export function createIndexArgs(options: {
  index: string;
  recordPrefix: string;
  algorithm: "HNSW" | "FLAT";
  dimensions: number;
}): string[] {
  const attributes = ["TYPE", "FLOAT32", "DIM", String(options.dimensions), "DISTANCE_METRIC", "COSINE"];
  return [
    options.index,
    "ON",
    "HASH",
    "PREFIX",
    "1",
    options.recordPrefix,
    "SCHEMA",
    "nstag",
    "TAG",
    "embtag",
    "TAG",
    "vec",
    "VECTOR",
    options.algorithm,
    String(attributes.length),
    ...attributes,
  ];
}

/**
 * Arguments of FT.SEARCH: the `k` nearest records of one namespace (and one embedder),
 * closest first. Tags are hex digests, so they need no TAG escaping.
 */
export function knnSearchArgs(options: {
  index: string;
  namespaceTag: string;
  embedderTag: string;
  k: number;
  vector: Buffer;
  returnFields: readonly string[];
}): (string | Buffer)[] {
  const filter = `(@nstag:{${options.namespaceTag}} @embtag:{${options.embedderTag}})`;
  const fields = [...options.returnFields, DISTANCE_FIELD];
  return [
    options.index,
    `${filter}=>[KNN ${options.k} @vec $blob AS ${DISTANCE_FIELD}]`,
    "PARAMS",
    "2",
    "blob",
    options.vector,
    "SORTBY",
    DISTANCE_FIELD,
    "ASC",
    "RETURN",
    String(fields.length),
    ...fields,
    "LIMIT",
    "0",
    String(options.k),
    "DIALECT",
    "2",
  ];
}

/** Documents of an FT.SEARCH RESP2 reply `[total, key1, [f, v, …], key2, […], …]`, in order. */
export function parseSearchReply(reply: unknown): Map<string, string>[] {
  if (!Array.isArray(reply)) return [];
  const documents: Map<string, string>[] = [];
  for (let i = 1; i + 1 < reply.length; i += 2) {
    const pairs = reply[i + 1];
    if (!Array.isArray(pairs)) continue;
    const fields = new Map<string, string>();
    for (let j = 0; j + 1 < pairs.length; j += 2) fields.set(String(pairs[j]), String(pairs[j + 1]));
    documents.push(fields);
  }
  return documents;
}

/** Cosine similarity from a COSINE distance (Redis reports 1 − cosine). */
export function similarityFromDistance(distance: string | undefined): number {
  return 1 - Number(distance);
}
