/**
 * Fair share between tenants, measured with real worker processes:
 *
 *   node --conditions=@agentry/source --import tsx bench/runtime/fair-share.ts [--flood 3000] [--late 20] [--tasks 2000] [--latency-ms 250]
 *
 * Two worker processes (apps/worker/src/main.ts, concurrency 25 each) run the reference wiring
 * against the fake Messages API served from this process through the real Anthropic SDK. A task
 * is the weather prompt: two model calls and one `get_weather` call.
 *
 * 1. Latency under a flood. Model calls take `--latency-ms` (as a real provider's take seconds),
 *    so a task's run time is the model's and not CPU contention on this machine. B alone: tenant
 *    B submits `--late` tasks on an idle system (before the floods and again after them). Flood: tenant A submits `--flood` tasks, then B
 *    its `--late`; B's submit → completion times (BullMQ's `finishedOn` minus the time before
 *    `submit`) are compared with B alone, with fair share on and then off (first in first out).
 * 2. Throughput, fair share on against off: model calls at zero latency (CPU-bound, where the
 *    scheduling work shows), `--tasks` tasks from four tenants submitted one tenant after another
 *    into a paused queue, timed from resume to the last completion; on, off, off, on, on, off,
 *    medians compared.
 * 3. Redis work per task: INFO commandstats and INFO cpu deltas over each throughput run (every
 *    command, inside scripts too, per task), and the fair-share calls alone (stamp at submit, the
 *    clock base read after add, admit at start, release at the end) run directly N times.
 *
 * Uses REDIS_URL when set, else starts a private redis-server. Redis figures are server-wide:
 * run it against a Redis nothing else uses (`pnpm bench --only fair-share` starts one).
 */
import { createRedis } from "../../packages/core/src/index.js";
import { RedisSessionTurns } from "../../packages/memory/src/index.js";
import { AgentryClient, FairShare } from "../../packages/runtime/src/index.js";
import { referenceReply } from "../../packages/reference/src/testing.js";
import { startFakeAnthropic } from "../../packages/testkit/src/index.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import { flags, freshPrefix, weatherPrompt } from "../lib/agentry.js";
import { commandLine, emitResult, type Figure } from "../lib/result.js";
import { startWorker } from "../lib/worker-process.js";
import { percentile, round, table, tail } from "../lib/stats.js";

const args = flags({
  flood: "3000",
  late: "20",
  tasks: "2000",
  "latency-ms": "250",
  workers: "2",
  concurrency: "25",
});
const FLOOD = Number(args.flood);
const LATE = Number(args.late);
const TASKS = Number(args.tasks);
const LATENCY_MS = Number(args["latency-ms"]);
const WORKERS = Number(args.workers);
const CONCURRENCY = Number(args.concurrency);

type RedisClient = ReturnType<typeof createRedis>;

/** Server-wide command calls and Redis CPU seconds, for deltas. */
async function redisWork(redis: RedisClient): Promise<{ calls: number; evalsha: number; cpu: number }> {
  const stats = await redis.info("commandstats");
  let calls = 0;
  let evalsha = 0;
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const name = m[1] as string;
    // The measuring connection's own INFO calls are not the system's work.
    if (name === "info") continue;
    calls += Number(m[2]);
    if (name === "evalsha" || name === "eval") evalsha += Number(m[2]);
  }
  const cpu = await redis.info("cpu");
  const used = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(cpu)?.[1] ?? Number.NaN);
  return { calls, evalsha, cpu: used("used_cpu_sys") + used("used_cpu_user") };
}

function delta(
  a: { calls: number; evalsha: number; cpu: number },
  b: { calls: number; evalsha: number; cpu: number },
  n: number,
) {
  return {
    calls: (b.calls - a.calls) / n,
    evalsha: (b.evalsha - a.evalsha) / n,
    cpuUs: ((b.cpu - a.cpu) * 1e6) / n,
  };
}

async function main(): Promise<void> {
  const server = await obtainTestRedis();
  const redis = createRedis({ url: server.url });
  let latency = LATENCY_MS;
  const fake = await startFakeAnthropic({
    // The reference worker's own rule table answers (weather: a tool call, then text), after the latency.
    handler: (request) => ({ ...referenceReply(request), ...(latency > 0 ? { delayMs: latency } : {}) }),
  });
  const prefix = freshPrefix("fair");
  const env = {
    REDIS_URL: server.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "bench-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_CONCURRENCY: String(CONCURRENCY),
    AGENTRY_WORKER_PORT: "0",
    OTEL_EXPORTER_OTLP_ENDPOINT: "",
    LOG_LEVEL: "info",
  };
  const workers = await Promise.all(
    Array.from({ length: WORKERS }, (_, i) => startWorker(`fair-bench-${i + 1}`, env)),
  );
  const sessions = new RedisSessionTurns({ redis, prefix });
  const fair = new AgentryClient({ url: server.url, prefix, sessionOrder: sessions, fairShare: true });
  const fifo = new AgentryClient({ url: server.url, prefix, sessionOrder: sessions, fairShare: false });
  await fair.queue.waitUntilReady();
  const events = await fair.queueEvents();
  const done = new Set<string>();
  let wakeDone: (() => void) | undefined;
  events.on("completed", ({ jobId }: { jobId: string }) => {
    done.add(jobId);
    wakeDone?.();
  });
  /** Resolves once every id completed (from the queue's events, with a re-read of states as the fallback). */
  const allDone = async (ids: string[], timeoutMs = 900_000) => {
    const deadline = Date.now() + timeoutMs;
    while (ids.some((id) => !done.has(id))) {
      if (Date.now() > deadline)
        throw new Error(
          `${ids.filter((id) => !done.has(id)).length} of ${ids.length} tasks did not complete`,
        );
      await new Promise<void>((resolve) => {
        wakeDone = resolve;
        setTimeout(resolve, 1_000);
      });
      for (const id of ids.filter((i) => !done.has(i)).slice(0, 50))
        if ((await fair.queue.getJobState(id)) === "completed") done.add(id);
    }
  };
  let serial = 0;
  /** Submits n tasks of a tenant, `inFlight` at a time; returns ids and the time just before each submit. */
  const submit = async (client: AgentryClient, tenant: string, n: number, inFlight = 100) => {
    const out: { id: string; at: number }[] = [];
    for (let i = 0; i < n; i += inFlight) {
      const batch = Array.from({ length: Math.min(inFlight, n - i) }, async () => {
        const k = serial++;
        const at = Date.now();
        const { taskId } = await client.submit(
          { prompt: weatherPrompt(k), sessionId: `s-${k}`, userId: `u-${k % 50}` },
          { tenant },
        );
        return { id: taskId, at };
      });
      out.push(...(await Promise.all(batch)));
    }
    return out;
  };
  /** Submit → completion (BullMQ's finishedOn), sorted, in ms. */
  const latencies = async (tasks: { id: string; at: number }[]) =>
    (
      await Promise.all(
        tasks.map(async (t) => ((await fair.queue.getJob(t.id))?.finishedOn ?? Number.NaN) - t.at),
      )
    ).sort((x, y) => x - y);

  const figures: Figure[] = [];
  const rows: (string | number)[][] = [];
  try {
    // Warm-up: connections, script loads, JIT.
    latency = 0;
    await allDone((await submit(fair, "warm", 300)).map((t) => t.id));

    // 1. Latency of B: alone (before and after the floods, to see the machine's drift), and
    // behind A's flood with fair share on and off.
    latency = LATENCY_MS;
    const bAlone = async () => {
      const alone = await submit(fair, "b", LATE, LATE);
      await allDone(alone.map((t) => t.id));
      return latencies(alone);
    };
    const idleBefore = await bAlone();
    const flood = async (client: AgentryClient, label: string) => {
      const a = await submit(client, "a", FLOOD);
      const b = await submit(client, "b", LATE, LATE);
      await allDone(b.map((t) => t.id));
      const bLat = await latencies(b);
      const bLast = Math.max(
        ...(await Promise.all(b.map(async (t) => (await fair.queue.getJob(t.id))?.finishedOn ?? 0))),
      );
      const aDoneBefore = (
        await Promise.all(
          a.map(async (t) => (await fair.queue.getJob(t.id))?.finishedOn ?? Number.POSITIVE_INFINITY),
        )
      ).filter((f) => f <= bLast).length;
      await allDone(a.map((t) => t.id));
      console.error(
        `  ${label}: B p50 ${round(percentile(bLat, 50))} ms, ${tail(bLat).name} ${round(tail(bLat).value)} ms; ${aDoneBefore} of A's ${FLOOD} finished before B's last`,
      );
      return { bLat, aDoneBefore };
    };
    const fairFlood = await flood(fair, "fair share on");
    const fifoFlood = await flood(fifo, "fair share off (FIFO)");
    const idleAfter = await bAlone();
    const idle = [...idleBefore, ...idleAfter].sort((x, y) => x - y);
    // B's tail: a p99 from 100 tasks or more, else the slowest task (with the default 20, the max).
    const t = tail(fairFlood.bLat).name;
    const ratio = tail(fairFlood.bLat).value / tail(idle).value;
    const p50AndTail = (xs: number[]) => [
      round(percentile(xs, 50)),
      `${round(tail(xs).value)} (${tail(xs).name})`,
    ];
    rows.push(
      ["B alone (idle), before the floods", ...p50AndTail(idleBefore), "-"],
      ["B alone (idle), after the floods", ...p50AndTail(idleAfter), "-"],
      [`B after A's ${FLOOD}, fair share on`, ...p50AndTail(fairFlood.bLat), fairFlood.aDoneBefore],
      [`B after A's ${FLOOD}, fair share off`, ...p50AndTail(fifoFlood.bLat), fifoFlood.aDoneBefore],
    );
    const note = `${LATE} tasks of B; model calls ${LATENCY_MS} ms; ${WORKERS} workers × ${CONCURRENCY}`;
    const pair = (xs: number[]) => `${round(percentile(xs, 50))} / ${round(tail(xs).value)}`;
    figures.push(
      {
        label: `tenant B alone, submit → complete p50 / ${tail(idle).name}`,
        value: pair(idle),
        unit: "ms",
        note: `${note}; ${LATE} before and ${LATE} after the floods (${tail(idleBefore).name} ${round(tail(idleBefore).value)} and ${round(tail(idleAfter).value)} ms)`,
      },
      {
        label: `tenant B after A's ${FLOOD}, fair share on, p50 / ${t}`,
        value: pair(fairFlood.bLat),
        unit: "ms",
        note: `${fairFlood.aDoneBefore} of A's tasks finished before B's last`,
      },
      {
        label: `tenant B after A's ${FLOOD}, fair share off (FIFO), p50 / ${t}`,
        value: pair(fifoFlood.bLat),
        unit: "ms",
        note: `${fifoFlood.aDoneBefore} of A's tasks finished before B's last`,
      },
      {
        label: `ratio B ${t} under flood ÷ B ${tail(idle).name} alone, fair share on`,
        value: round(ratio, 2),
        note: "target ≤ 2; B alone = both idle runs together",
      },
    );

    // 2 and 3. Throughput and Redis work, fair share on against off, zero model latency.
    latency = 0;
    const tenants = ["t1", "t2", "t3", "t4"];
    const runs: { mode: "on" | "off"; perSecond: number; calls: number; evalsha: number; cpuUs: number }[] =
      [];
    // Alternating, and in both orders, so the machine's drift falls on both modes alike.
    for (const mode of ["on", "off", "off", "on", "on", "off"] as const) {
      const client = mode === "on" ? fair : fifo;
      await fair.queue.pause();
      const before = await redisWork(redis);
      const ids: string[] = [];
      for (const t of tenants)
        ids.push(...(await submit(client, t, TASKS / tenants.length)).map((x) => x.id));
      const t0 = performance.now();
      await fair.queue.resume();
      await allDone(ids);
      const seconds = (performance.now() - t0) / 1000;
      const work = delta(before, await redisWork(redis), ids.length);
      runs.push({ mode, perSecond: ids.length / seconds, ...work });
      console.error(
        `  throughput, fair share ${mode}: ${round(ids.length / seconds)} tasks/s; ${round(work.calls, 1)} Redis commands, ${round(work.cpuUs)} µs Redis CPU per task`,
      );
    }
    /** The median over a mode's three runs. */
    const median = (mode: "on" | "off", k: "perSecond" | "calls" | "evalsha" | "cpuUs") =>
      percentile(
        runs
          .filter((r) => r.mode === mode)
          .map((r) => r[k])
          .sort((x, y) => x - y),
        50,
      );
    const throughputRatio = median("on", "perSecond") / median("off", "perSecond");
    for (const r of runs)
      rows.push([
        `throughput, fair share ${r.mode}`,
        `${round(r.perSecond)} tasks/s`,
        `${round(r.calls, 1)} cmds/task`,
        `${round(r.cpuUs)} µs/task`,
      ]);
    figures.push(
      {
        label: "throughput, fair share on",
        value: round(median("on", "perSecond")),
        unit: "tasks/s",
        note: `${TASKS} tasks of 4 tenants, median of 3 runs, zero model latency`,
      },
      {
        label: "throughput, fair share off (FIFO)",
        value: round(median("off", "perSecond")),
        unit: "tasks/s",
        note: "same, runs interleaved on, off, off, on, on, off",
      },
      {
        label: "ratio throughput fair share on ÷ off",
        value: round(throughputRatio, 3),
        note: "target ≥ 0.9",
      },
      {
        label: "Redis commands per task, fair share on / off",
        value: `${round(median("on", "calls"), 1)} / ${round(median("off", "calls"), 1)}`,
        note: "INFO commandstats, every command incl. inside scripts, submit to completion, medians",
      },
      {
        label: "Redis CPU per task, fair share on / off",
        value: `${round(median("on", "cpuUs"))} / ${round(median("off", "cpuUs"))}`,
        unit: "µs",
        note: "INFO cpu (sys + user) over the run ÷ tasks, medians",
      },
    );

    // The fair-share calls alone, as a task makes them, with no other traffic.
    const n = 5_000;
    const alonePrefix = freshPrefix("fair-calls");
    const share = new FairShare({ redis, prefix: alonePrefix });
    await share.setSettings("acme", { maxRunning: 1_000_000 });
    const before = await redisWork(redis);
    for (let i = 0; i < n; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, j) => {
          const id = `task-${i + j}`;
          const { stamps } = await share.stamp("acme", [id], { fair: true });
          await share.base();
          const admission = await share.admit({
            taskId: id,
            tenant: "acme",
            attempt: "tok",
            priority: stamps[0]?.priority ?? 0,
          });
          await share.release("acme", admission.slot);
        }),
      );
    }
    const calls = delta(before, await redisWork(redis), n);
    rows.push([
      "fair-share calls alone (per task)",
      `${round(calls.calls, 1)} cmds`,
      `${round(calls.evalsha, 1)} scripts`,
      `${round(calls.cpuUs)} µs`,
    ]);
    figures.push({
      label: "Redis work fair share adds per task",
      value: `${round(calls.calls, 1)} commands (${round(calls.evalsha, 1)} scripts + 1 HGET), ${round(calls.cpuUs)} µs CPU`,
      note: `stamp, base read, admit, release run alone ${n} times; slot renewals add one ZADD per running task every 10 s`,
    });
  } finally {
    for (const w of workers) w.kill("SIGKILL");
    await fair.close();
    await fifo.close();
    await fake.close();
    await redis.quit();
    await server.stop();
  }
  console.log(`\nFair share, ${WORKERS} worker processes × concurrency ${CONCURRENCY}, Redis ${server.kind}`);
  console.log(table(["", "p50 ms / rate", "tail ms / cmds", "A done before B's last / CPU"], rows));
  emitResult({
    name: "fair-share",
    command: commandLine("bench/runtime/fair-share.ts", [
      "--flood",
      String(FLOOD),
      "--late",
      String(LATE),
      "--tasks",
      String(TASKS),
      "--latency-ms",
      String(LATENCY_MS),
    ]),
    figures,
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
