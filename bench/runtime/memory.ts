/**
 * Worker memory under a long run: RSS of a worker process at concurrency 100 after 10k and
 * after 50k completed tasks, and the growth between the two (total and per 10k tasks).
 *
 *   node --conditions=@agentry/source --import tsx bench/runtime/memory.ts [--first 10000] [--last 50000] [--concurrency 100]
 *
 * The worker runs in its own child process (`node --expose-gc`, the reference worker wiring from
 * `buildWorker`, ScriptedModel at zero latency, weather prompts: two model calls and one tool call
 * per task, every hook on, tracing in-process without exporter), so its RSS is the worker's alone.
 * This process submits tasks with at most 2,000 waiting, lets the queue drain at each mark, asks
 * the child to run GC twice and then reads `process.memoryUsage()`. Redis `used_memory` is read at
 * the same marks: finished jobs are trimmed by the catalog's retention (10,000 completed kept),
 * but each task also leaves its session history (7-day TTL) and audit entries (kept for good).
 * Uses REDIS_URL when set, else starts a private redis-server.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRedis } from "../../packages/core/src/index.js";
import { AuditLog } from "../../packages/governance/src/index.js";
import { startTelemetry } from "../../packages/runtime/src/index.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import {
  benchClient,
  dropPrefix,
  flags,
  freshPrefix,
  redisUsedMemory,
  startFullWorker,
  submitTasks,
  weatherPrompt,
} from "../lib/agentry.js";
import { commandLine, emitResult } from "../lib/result.js";
import { mb, round, table } from "../lib/stats.js";

type ToChild = { type: "sample" } | { type: "stop" };
type FromChild =
  | { type: "ready" }
  | { type: "progress"; completed: number; failed: number }
  | { type: "sample"; rss: number; heapUsed: number; external: number; gc: boolean }
  | { type: "stopped" };

const SELF = fileURLToPath(import.meta.url);
const BACKLOG = 2_000;

/** The worker side, in the child process. */
async function workerMain(url: string, prefix: string, concurrency: number): Promise<void> {
  const send = (m: FromChild) => process.send?.(m);
  const telemetry = startTelemetry({ serviceName: "agentry-worker" });
  const { built, completions } = await startFullWorker({ url, prefix, concurrency });
  const timer = setInterval(
    () => send({ type: "progress", completed: completions.completed, failed: completions.failed }),
    100,
  );
  process.on("message", (m: ToChild) => {
    if (m.type === "sample") {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      setTimeout(() => {
        const u = process.memoryUsage();
        send({
          type: "sample",
          rss: u.rss,
          heapUsed: u.heapUsed,
          external: u.external,
          gc: gc !== undefined,
        });
      }, 200);
    } else {
      clearInterval(timer);
      void (async () => {
        send({ type: "progress", completed: completions.completed, failed: completions.failed });
        await built.close();
        await telemetry.shutdown();
        send({ type: "stopped" });
        process.exit(0);
      })();
    }
  });
  send({ type: "ready" });
}

/** Keys under `prefix`, grouped by shape (id-like segments replaced by `*`), largest first. */
async function keyFamilies(
  redis: ReturnType<typeof createRedis>,
  prefix: string,
): Promise<[string, number][]> {
  const counts = new Map<string, number>();
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 5000);
    cursor = next;
    for (const key of keys) {
      const shape = key
        .slice(prefix.length + 1)
        .split(":")
        .map((part) => (/\d/.test(part) || part.length > 20 ? "*" : part))
        .join(":");
      counts.set(shape, (counts.get(shape) ?? 0) + 1);
    }
  } while (cursor !== "0");
  return [...counts.entries()].sort((x, y) => y[1] - x[1]);
}

class ChildWorker {
  completed = 0;
  failed = 0;
  readonly #child: ChildProcess;
  #listeners: ((m: FromChild) => void)[] = [];

  constructor(url: string, prefix: string, concurrency: number) {
    this.#child = fork(SELF, ["--worker", url, prefix, String(concurrency)], {
      execArgv: ["--expose-gc", "--conditions=@agentry/source", "--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.#child.on("message", (m: FromChild) => {
      if (m.type === "progress") {
        this.completed = m.completed;
        this.failed = m.failed;
      }
      for (const l of this.#listeners) l(m);
    });
    this.#child.on("exit", (code) => {
      if (code !== 0) console.error(`worker child exited with ${code}`);
    });
  }

  next<T extends FromChild["type"]>(type: T, timeoutMs = 60_000): Promise<Extract<FromChild, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${type} from the worker child in ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      const l = (m: FromChild) => {
        if (m.type !== type) return;
        clearTimeout(timer);
        this.#listeners = this.#listeners.filter((x) => x !== l);
        resolve(m as Extract<FromChild, { type: T }>);
      };
      this.#listeners.push(l);
    });
  }

  send(m: ToChild): void {
    this.#child.send(m);
  }
}

async function main(): Promise<void> {
  const args = flags({ first: "10000", last: "50000", concurrency: "100" });
  const FIRST = Number(args.first);
  const LAST = Number(args.last);
  const CONCURRENCY = Number(args.concurrency);
  const server = await obtainTestRedis();
  const prefix = freshPrefix("memory");
  const telemetry = startTelemetry({ serviceName: "agentry-bench-producer" });
  const { client, redis } = await benchClient(server.url, prefix);
  const admin = createRedis({ url: server.url });
  const auditKey = new AuditLog({ redis: admin, prefix }).streamKey;
  const child = new ChildWorker(server.url, prefix, CONCURRENCY);
  await child.next("ready");
  const started = performance.now();
  try {
    const marks: {
      tasks: number;
      rss: number;
      heapUsed: number;
      redis: number;
      keys: number;
      audit: number;
      seconds: number;
      gc: boolean;
    }[] = [];
    const idle = await sampleAt(0);
    let submitted = 0;
    for (const target of [FIRST, LAST]) {
      while (submitted < target) {
        if (submitted - child.completed >= BACKLOG) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        const n = Math.min(200, target - submitted);
        await submitTasks(client, n, weatherPrompt, { offset: submitted });
        submitted += n;
      }
      const deadline = Date.now() + 600_000;
      while (child.completed < target) {
        if (Date.now() > deadline)
          throw new Error(
            `stalled at ${child.completed}/${target} completed (${child.failed} failed attempts)`,
          );
        await new Promise((r) => setTimeout(r, 50));
      }
      marks.push(await sampleAt(target));
      console.error(
        `  ${target} tasks completed in ${round((performance.now() - started) / 1000)} s, RSS ${mb(marks[marks.length - 1]?.rss ?? 0)} MB`,
      );
    }
    child.send({ type: "stop" });
    await child.next("stopped");

    async function sampleAt(tasks: number) {
      child.send({ type: "sample" });
      const s = await child.next("sample");
      return {
        tasks,
        rss: s.rss,
        heapUsed: s.heapUsed,
        redis: await redisUsedMemory(admin),
        keys: await admin.dbsize(),
        audit: await admin.xlen(auditKey),
        seconds: (performance.now() - started) / 1000,
        gc: s.gc,
      };
    }

    const [a, b] = marks as [(typeof marks)[number], (typeof marks)[number]];
    const per10k = (x: number) => (x / (b.tasks - a.tasks)) * 10_000;
    console.log(
      `\nWorker memory, concurrency ${CONCURRENCY}, ScriptedModel weather tasks, GC forced before each sample: ${a.gc ? "yes" : "no"}; ${child.failed} failed attempts`,
    );
    console.log(
      table(
        ["", "worker RSS MB", "worker heap MB", "redis used MB", "redis keys", "audit entries"],
        [
          ["idle, after start", mb(idle.rss), mb(idle.heapUsed), mb(idle.redis), idle.keys, idle.audit],
          [`after ${a.tasks} tasks`, mb(a.rss), mb(a.heapUsed), mb(a.redis), a.keys, a.audit],
          [`after ${b.tasks} tasks`, mb(b.rss), mb(b.heapUsed), mb(b.redis), b.keys, b.audit],
          [
            `growth ${a.tasks}→${b.tasks}`,
            mb(b.rss - a.rss),
            mb(b.heapUsed - a.heapUsed),
            mb(b.redis - a.redis),
            b.keys - a.keys,
            b.audit - a.audit,
          ],
          [
            "growth per 10k tasks",
            mb(per10k(b.rss - a.rss)),
            mb(per10k(b.heapUsed - a.heapUsed)),
            mb(per10k(b.redis - a.redis)),
            round(per10k(b.keys - a.keys)),
            round(per10k(b.audit - a.audit)),
          ],
        ],
      ),
    );
    const families = await keyFamilies(admin, prefix);
    console.log(`keys left under the prefix after ${b.tasks} tasks, by family:`);
    console.log(table(["family", "keys"], families.slice(0, 12)));
    const rate = (b.tasks - a.tasks) / (b.seconds - a.seconds);
    console.log(
      `${b.tasks} tasks in ${round(b.seconds)} s (${round(rate)} tasks/s between the marks, drain waits included)`,
    );
    emitResult({
      name: "memory",
      command: commandLine("bench/runtime/memory.ts", [
        "--first",
        String(FIRST),
        "--last",
        String(LAST),
        "--concurrency",
        String(CONCURRENCY),
      ]),
      figures: [
        { label: "worker RSS, idle after start", value: mb(idle.rss), unit: "MB" },
        {
          label: `worker RSS after ${a.tasks} tasks`,
          value: mb(a.rss),
          unit: "MB",
          note: `concurrency ${CONCURRENCY}, GC forced: ${a.gc ? "yes" : "no"}`,
        },
        { label: `worker RSS after ${b.tasks} tasks`, value: mb(b.rss), unit: "MB" },
        {
          label: `worker RSS growth ${a.tasks}→${b.tasks}`,
          value: mb(b.rss - a.rss),
          unit: "MB",
          note: `${mb(per10k(b.rss - a.rss))} MB per 10k tasks`,
        },
        {
          label: `worker heap used growth ${a.tasks}→${b.tasks}`,
          value: mb(b.heapUsed - a.heapUsed),
          unit: "MB",
          note: `${mb(a.heapUsed)} → ${mb(b.heapUsed)} MB`,
        },
        {
          label: `Redis used_memory after ${a.tasks} / ${b.tasks} tasks`,
          value: `${mb(a.redis)} / ${mb(b.redis)}`,
          unit: "MB",
          note: `${mb(per10k(b.redis - a.redis))} MB per 10k tasks; ${round(per10k(b.audit - a.audit))} audit entries and ${round(per10k(b.keys - a.keys))} keys per 10k tasks`,
        },
        {
          label: `largest key families after ${b.tasks} tasks`,
          value: families
            .slice(0, 4)
            .map(([k, n]) => `${k} ${n}`)
            .join("; "),
        },
        {
          label: "tasks/s between the marks",
          value: round(rate),
          unit: "tasks/s",
          note: `concurrency ${CONCURRENCY}, one worker process`,
        },
      ],
    });
  } finally {
    await client.close();
    await dropPrefix(admin, prefix);
    await redis.quit();
    await admin.quit();
    await telemetry.shutdown();
    await server.stop();
  }
}

if (process.argv[2] === "--worker") {
  const [url, prefix, concurrency] = process.argv.slice(3);
  workerMain(url as string, prefix as string, Number(concurrency)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
