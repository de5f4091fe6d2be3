/**
 * Vector memory: insert rate and search latency (p50, and p99 from 100 queries or more, else
 * the max) of RedisVectorMemory at 10k and
 * 100k items in one namespace, with the local HashingEmbedder (512 dims). Prints which search
 * path the server allowed (brute force on Redis 7; FT.SEARCH KNN on Redis 8 / RediSearch).
 *
 *   node --conditions=@agentry/source --import tsx bench/memory/vector-search.ts [--sizes 10000,100000] [--queries 30]
 *
 * Uses REDIS_URL when set (keys under a fresh prefix, deleted at the end), else starts a
 * private redis-server. Not a test: figures depend on the machine.
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { createRedis } from "../../packages/core/src/index.js";
import { HashingEmbedder, RedisVectorMemory, type AddMemoryInput } from "../../packages/memory/src/index.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import { P99_MIN_SAMPLES, percentile, tail } from "../lib/stats.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "10000,100000" },
    queries: { type: "string", default: "30" },
    batch: { type: "string", default: "500" },
  },
});
const SIZES = (values.sizes ?? "")
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const QUERIES = Number(values.queries);
const BATCH = Number(values.batch);
const IN_FLIGHT = 4;

// A small vocabulary so texts share words, as notes about one user would.
const WORDS = (
  "weather paris rain sun cloud forecast meeting project deadline budget invoice revenue quarter " +
  "customer support ticket refund order shipping delivery address password reset account login " +
  "editor dark mode theme keyboard shortcut deploy production staging cluster service database " +
  "backup restore migration schema index query latency cache memory disk network firewall policy " +
  "approval review release version changelog feature flag experiment metric dashboard alert incident " +
  "coffee tea lunch dinner travel flight hotel tokyo london berlin monday friday weekend holiday " +
  "family birthday gift music movie book garden tomato recipe flour oven bike run swim"
).split(" ");

let seed = 42;
function random(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32;
}
function sentence(): string {
  const n = 6 + Math.floor(random() * 10);
  return Array.from({ length: n }, () => WORDS[Math.floor(random() * WORDS.length)]).join(" ");
}

async function main(): Promise<void> {
  const server = await obtainTestRedis();
  const redis = createRedis({ url: server.url, role: "worker" });
  const prefix = `bench-memory-${randomBytes(4).toString("hex")}`;
  const embedder = new HashingEmbedder();
  const memory = new RedisVectorMemory({ redis, prefix, embedder });
  const namespace = "tenant:bench:user:u1";
  const mode = await memory.mode();
  const info = await redis.info("server");
  const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? "?";
  console.error(`Redis ${version} (${server.kind}), search path: ${mode}, embedder ${embedder.id}`);

  const rows: string[][] = [];
  let inserted = 0;
  try {
    for (const size of SIZES) {
      // Insert up to `size`, pipelined: batches of BATCH records, IN_FLIGHT batches at a time.
      const started = performance.now();
      const toInsert = size - inserted;
      const batches: AddMemoryInput[][] = [];
      for (let i = 0; i < toInsert; i += BATCH) {
        batches.push(
          Array.from({ length: Math.min(BATCH, toInsert - i) }, () => ({ namespace, text: sentence() })),
        );
      }
      for (let i = 0; i < batches.length; i += IN_FLIGHT) {
        await Promise.all(batches.slice(i, i + IN_FLIGHT).map((b) => memory.addMany(b)));
      }
      const insertSeconds = (performance.now() - started) / 1000;
      inserted = size;
      const count = await memory.count(namespace);

      // Warm up once, then time QUERIES searches (top 5) one after another.
      await memory.search({ namespace, query: sentence() });
      const latencies: number[] = [];
      for (let q = 0; q < QUERIES; q++) {
        const query = sentence();
        const t0 = performance.now();
        const hits = await memory.search({ namespace, query, k: 5 });
        latencies.push(performance.now() - t0);
        if (hits.length !== 5) throw new Error(`expected 5 hits, got ${hits.length}`);
      }
      latencies.sort((a, b) => a - b);
      const usedMemory = /used_memory_human:(\S+)/.exec(await redis.info("memory"))?.[1] ?? "?";
      rows.push([
        String(count),
        mode,
        (toInsert / insertSeconds).toFixed(0),
        percentile(latencies, 50).toFixed(1),
        tail(latencies).value.toFixed(1),
        String(QUERIES),
        usedMemory,
      ]);
      console.error(`  ${count} items done`);
    }
  } finally {
    if (server.kind === "external") {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== "0");
    }
    redis.disconnect();
    await server.stop();
  }

  // The tail column is a p99 from 100 queries or more, else the max (its header says which).
  const tailName = QUERIES >= P99_MIN_SAMPLES ? "p99" : "max";
  const header = [
    "items",
    "path",
    "insert/s",
    "search p50 ms",
    `search ${tailName} ms`,
    "queries",
    "redis memory",
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join("  ");
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
