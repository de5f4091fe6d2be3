/**
 * Streaming latency: from the fake Messages API writing a text delta to its socket to an SSE
 * client of the producer receiving that text, with N tasks streaming at once.
 *
 *   node --conditions=@agentry/source --import tsx bench/streaming/delta-latency.ts [--tasks 100] [--words 200] [--event-delay-ms 20] [--workers 2] [--flush-ms 20]
 *
 * The path measured: fake API → the real SDK's stream helper in a worker process → the worker's
 * batcher (`AGENTRY_TEXT_FLUSH_MS`) → the process's appender (one pipeline per 5 ms tick) → the
 * fenced append script (XADD + PUBLISH of a notice) → the producer process's subscriber hands the
 * notice to the task's SSE connection → `delta` event → the client.
 * The fake API and the SSE clients run in this process, so send and receive times are read from
 * one clock. Every word of every answer is unique, so each word's receive time is matched to the
 * moment the fake sent it; a batch that carries several words gives each its own latency. Only
 * words sent after the task's SSE connection was open count (earlier ones arrive as a replay).
 * The headline counts the words sent while all N tasks were streaming (from the last task's
 * first word to the first task's last word); a second row counts every word, start-up included.
 * The split at the XADD (the entry id's time, Redis's clock) shows which side the time goes to.
 * A warm-up round (10 tasks) is not counted. Uses REDIS_URL when set, else a private redis-server.
 */
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import os from "node:os";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createRedis } from "../../packages/core/src/index.js";
import {
  freePort,
  obtainTestRedis,
  startFakeAnthropic,
  type FakeReply,
  type RecordedRequest,
} from "../../packages/testkit/src/index.js";
import { emitResult, commandLine } from "../lib/result.js";
import { p99, percentile, round, table, tail } from "../lib/stats.js";

const { values: args } = parseArgs({
  options: {
    tasks: { type: "string", default: "100" },
    words: { type: "string", default: "200" },
    "event-delay-ms": { type: "string", default: "20" },
    workers: { type: "string", default: "2" },
    "flush-ms": { type: "string", default: "20" },
  },
});
const TASKS = Number(args.tasks);
const WORDS = Number(args.words);
const EVENT_DELAY_MS = Number(args["event-delay-ms"]);
const WORKERS = Number(args.workers);
const FLUSH_MS = Number(args["flush-ms"]);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const API_KEY = "bench-streaming-key";
const SCRIPT = "bench/streaming/delta-latency.ts";
const now = () => performance.timeOrigin + performance.now();

/** When the fake wrote each word (words are unique across the run). */
const sentAt = new Map<string, number>();
/** The answer of one request: `WORDS` words unique to its prompt (`r<round>t<task>`). */
function answer(request: RecordedRequest): FakeReply {
  const prompt = request.body.messages?.at(-1)?.content;
  const tag = typeof prompt === "string" ? (/\b(r\d+t\d+)\b/.exec(prompt)?.[1] ?? "x") : "x";
  const text = Array.from({ length: WORDS }, (_, i) => `${tag}w${i}`).join(" ");
  return { content: text, delayMs: 300, stream: { eventDelayMs: EVENT_DELAY_MS } };
}

function startApp(
  name: string,
  main: string,
  env: Record<string, string>,
): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", main], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  child.once("exit", (code) => {
    if (code !== 0 && code !== null) process.stderr.write(`${name} exited with ${code}:\n${out}\n`);
  });
  return { child, output: () => out };
}

async function until(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What one task's SSE client saw. */
interface Followed {
  taskId: string;
  openedAt: number;
  /** Per word timed: when the fake sent it, the whole latency, and its split at the XADD (Redis's clock, whole ms). */
  samples: { sent: number; latency: number; toRedis: number; fromRedis: number }[];
  words: number;
  deltaEvents: number;
  ended: string;
}

/**
 * Opens a task's SSE stream (a plain `node:http` request: the lightest client, so the measuring
 * process adds little of its own) and records, for each word of each `delta`, now − when the
 * fake sent it.
 */
function follow(base: string, taskId: string): Promise<Followed> {
  const f: Followed = {
    taskId,
    openedAt: Number.POSITIVE_INFINITY,
    samples: [],
    words: 0,
    deltaEvents: 0,
    ended: "",
  };
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${base}/v1/tasks/${taskId}/events`,
      { headers: { authorization: `Bearer ${API_KEY}` } },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`events of ${taskId}: ${res.statusCode}`));
          res.resume();
          return;
        }
        res.setEncoding("utf8");
        let buffer = "";
        res.on("data", (chunk: string) => {
          const at = now();
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            if (event === "status") f.openedAt = Math.min(f.openedAt, at);
            if (event === "completed" || event === "failed") f.ended = event;
            if (event !== "delta") continue;
            f.deltaEvents += 1;
            const { text } = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? "{}") as { text: string };
            const xaddAt = Number(/^id: (\d+)-/m.exec(block)?.[1] ?? Number.NaN);
            for (const word of text.split(/\s+/).filter(Boolean)) {
              f.words += 1;
              const sent = sentAt.get(word);
              if (sent === undefined || sent < f.openedAt) continue;
              f.samples.push({ sent, latency: at - sent, toRedis: xaddAt - sent, fromRedis: at - xaddAt });
            }
          }
        });
        res.on("end", () => resolve(f));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
  });
}

async function round_(base: string, label: string, n: number): Promise<Followed[]> {
  const submitted = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const res = await fetch(`${base}/v1/tasks`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ prompt: `Please write a long answer ${label}t${i}`, userId: "bench" }),
      });
      if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { taskId: string }).taskId;
    }),
  );
  return Promise.all(submitted.map((taskId) => follow(base, taskId)));
}

async function main(): Promise<void> {
  const server = await obtainTestRedis();
  const prefix = `bench-streaming-${process.pid}`;
  const fake = await startFakeAnthropic({
    handler: answer,
    onStreamEvent: (e) => {
      const delta = e.data["delta"] as { type?: string; text?: string } | undefined;
      if (e.event !== "content_block_delta" || delta?.type !== "text_delta") return;
      for (const word of (delta.text ?? "").split(/\s+/).filter(Boolean)) sentAt.set(word, e.sentAt);
    },
  });
  const keys = join(mkdtempSync(join(tmpdir(), "agentry-bench-streaming-")), "api-keys");
  writeFileSync(keys, `${API_KEY}=bench\n`);
  const common = { REDIS_URL: server.url, AGENTRY_PREFIX: prefix };
  const port = await freePort();
  const apps = [
    startApp("producer", "apps/producer/src/main.ts", {
      ...common,
      PORT: String(port),
      HOST: "127.0.0.1",
      AGENTRY_API_KEYS_FILE: keys,
    }),
    ...Array.from({ length: WORKERS }, (_, i) =>
      startApp(`worker ${i + 1}`, "apps/worker/src/main.ts", {
        ...common,
        AGENTRY_LLM: "anthropic",
        ANTHROPIC_API_KEY: "bench",
        ANTHROPIC_BASE_URL: fake.url,
        AGENTRY_CONCURRENCY: String(Math.ceil(TASKS / WORKERS)),
        AGENTRY_WORKER_PORT: "0",
        AGENTRY_WORKER_NAME: `bench-worker-${i + 1}`,
        AGENTRY_TEXT_FLUSH_MS: String(FLUSH_MS),
        OTEL_EXPORTER_OTLP_ENDPOINT: "",
        LOG_LEVEL: "info",
      }),
    ),
  ];
  const base = `http://127.0.0.1:${port}`;
  const conn = createRedis({ url: server.url });
  try {
    await until(
      () =>
        fetch(`${base}/healthz`).then(
          (r) => r.ok,
          () => false,
        ),
      "the producer",
    );
    await until(
      () => apps.slice(1).every((a) => a.output().includes('"event":"worker-started"')),
      "the workers",
    );

    await round_(base, "r0", Math.min(10, TASKS));
    const loadBefore = os.loadavg()[0] ?? 0;
    const started = performance.now();
    const followed = await round_(base, "r1", TASKS);
    const seconds = (performance.now() - started) / 1000;

    const failed = followed.filter((f) => f.ended !== "completed").length;
    // The window in which every task was streaming: from the last task's first word to the first task's last word.
    const spans = new Map<string, { first: number; last: number }>();
    for (const [word, at] of sentAt) {
      const tag = /^(r1t\d+)w/.exec(word)?.[1];
      if (!tag) continue;
      const span = spans.get(tag) ?? { first: at, last: at };
      spans.set(tag, { first: Math.min(span.first, at), last: Math.max(span.last, at) });
    }
    const from = Math.max(...[...spans.values()].map((x) => x.first));
    const to = Math.min(...[...spans.values()].map((x) => x.last));
    const all = followed.flatMap((f) => f.samples);
    const steady = all.filter((x) => x.sent >= from && x.sent <= to);
    const sorted = (xs: typeof all, pick: (x: (typeof all)[number]) => number) =>
      xs.map(pick).sort((a, b) => a - b);
    const latencies = sorted(steady, (x) => x.latency);
    const words = followed.reduce((n, f) => n + f.words, 0);
    const deltaEvents = followed.reduce((n, f) => n + f.deltaEvents, 0);
    const p = (q: number) => round(percentile(latencies, q), 1);
    /** p50 / p99 (or p50 / max below 100 words) of a sorted sample, and the name of its tail. */
    const headline = (xs: number[]) => ({
      name: `p50 / ${tail(xs).name}`,
      value: `${round(percentile(xs, 50), 1)} / ${round(tail(xs).value, 1)}`,
    });
    const row = (name: string, xs: number[]) => [
      name,
      ...[50, 90].map((q) => round(percentile(xs, q), 1)),
      p99(xs) === undefined ? "n/a" : round(p99(xs) as number, 1),
      round(percentile(xs, 100), 1),
      xs.length,
    ];
    console.log(
      `\nDelta latency, fake API send → SSE client receive (ms): ${TASKS} tasks, ${WORDS} words each, one word every ${EVENT_DELAY_MS} ms; ` +
        `${WORKERS} worker processes, 1 producer process; text written at most every ${FLUSH_MS} ms per task`,
    );
    console.log(
      table(
        ["", "p50", "p90", "p99", "max", "words"],
        [
          row(`all ${TASKS} streaming at once (${round((to - from) / 1000, 1)} s)`, latencies),
          row(
            "  send → XADD",
            sorted(steady, (x) => x.toRedis),
          ),
          row(
            "  XADD → receive",
            sorted(steady, (x) => x.fromRedis),
          ),
          row(
            "every word, start-up included",
            sorted(all, (x) => x.latency),
          ),
        ],
      ),
    );
    console.log(
      "(the split uses the entry id's time, Redis's clock in whole milliseconds: each part is ±1 ms)",
    );
    console.log(
      `\nload average (1 min) ${loadBefore.toFixed(1)} before, ${(os.loadavg()[0] ?? 0).toFixed(1)} after, on ${os.cpus().length} CPUs`,
    );
    console.log(
      `${TASKS} tasks in ${seconds.toFixed(1)} s (${failed} not completed); ${words} words arrived in ${deltaEvents} delta events (${(words / Math.max(1, deltaEvents)).toFixed(2)} words per event: the batching); redis: ${server.kind}`,
    );
    const command = commandLine(SCRIPT, [
      "--tasks",
      String(TASKS),
      "--words",
      String(WORDS),
      "--event-delay-ms",
      String(EVENT_DELAY_MS),
      "--workers",
      String(WORKERS),
      "--flush-ms",
      String(FLUSH_MS),
    ]);
    console.log(`command: ${command}`);
    if (failed > 0) throw new Error(`${failed} tasks did not complete`);
    const note = `${latencies.length} words sent while all ${TASKS} tasks streamed, load average ${loadBefore.toFixed(1)} on ${os.cpus().length} CPUs`;
    const everyWord = sorted(all, (x) => x.latency);
    emitResult({
      name: "streaming",
      command,
      figures: [
        {
          label: `delta latency ${headline(latencies).name}, ${TASKS} tasks streaming at once`,
          value: headline(latencies).value,
          unit: "ms",
          note,
        },
        { label: "delta latency p90 / max", value: `${p(90)} / ${p(100)}`, unit: "ms", note },
        {
          label: `delta latency ${headline(everyWord).name}, every word incl. start-up`,
          value: headline(everyWord).value,
          unit: "ms",
          note: `${everyWord.length} words`,
        },
        {
          label: "words per delta event (batching)",
          value: round(words / Math.max(1, deltaEvents), 2),
          note: `one word sent every ${EVENT_DELAY_MS} ms, at most one write every ${FLUSH_MS} ms per task`,
        },
      ],
    });
  } finally {
    for (const app of apps) app.child.kill("SIGTERM");
    await Promise.all(
      apps.map((a) =>
        a.child.exitCode === null ? new Promise((r) => a.child.once("exit", r)) : Promise.resolve(),
      ),
    );
    await fake.close();
    let cursor = "0";
    do {
      const [next, found] = await conn.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (found.length > 0) await conn.unlink(...found);
    } while (cursor !== "0");
    await conn.quit();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
