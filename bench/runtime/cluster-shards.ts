/**
 * Queue shards on a Redis Cluster, measured with real worker processes:
 *
 *   node --conditions=@agentry/source --import tsx bench/runtime/cluster-shards.ts [--tasks 1500] [--workers 3] [--concurrency 24] [--audit-lanes 4] [--allowance-calls 8]
 *
 * Starts a three-master Redis Cluster (redis-server processes joined with `redis-cli --cluster
 * create`, as the Cluster tests do), the fake Messages API at zero latency (so Redis, not a
 * provider, is what the tasks wait on), and `--workers` worker processes (apps/worker/src/main.ts,
 * the reference wiring) consuming every shard. A task is the weather prompt: two model calls
 * (each a budget reserve and settle on the global ledger) and one `get_weather` call; every task
 * has its own session.
 *
 * 1. Spread: `--tasks` tasks with AGENTRY_SHARDS=1, then with AGENTRY_SHARDS=3, both with budget
 *    allowances (AGENTRY_BUDGET_ALLOWANCE_CALLS=`--allowance-calls`), then with 3 shards and a
 *    reserve and settle on the ledger per model call (allowances off), fresh prefixes and fresh
 *    workers each time, each timed from the first submit to the last completion, with INFO cpu
 *    (used_cpu_sys + used_cpu_user) read on every master before and after. Figures: each master's
 *    share of the Redis CPU of the run, tasks/s, and the implied ceiling at one core per master:
 *    tasks ÷ the busiest master's CPU seconds (the busiest master saturates first).
 * 2. Bare BullMQ for scale: `--tasks` no-op jobs on one queue of the same cluster, same worker
 *    count and concurrency, tasks/s and Redis CPU per job.
 * 3. Budget under contention, with allowances: a global limit a burst of tasks from every shard
 *    overruns; the ledger's use, once every task ended and the workers returned their allowances,
 *    must not exceed it (overshoot 0) and must equal what the fake provider billed.
 */
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { clusterSlot, createRedis, shardPrefixes } from "../../packages/core/src/index.js";
import { RedisSessionTurns } from "../../packages/memory/src/index.js";
import { AgentryClient, BudgetLedger } from "../../packages/runtime/src/index.js";
import { referenceReply } from "../../packages/reference/src/testing.js";
import { startFakeAnthropic, startRedisCluster } from "../../packages/testkit/src/index.js";
import { flags, weatherPrompt } from "../lib/agentry.js";
import { commandLine, emitResult, type Figure } from "../lib/result.js";
import { startWorker, stopWorkers } from "../lib/worker-process.js";
import { round, table } from "../lib/stats.js";

const args = flags({
  tasks: "1500",
  workers: "3",
  concurrency: "24",
  "budget-tasks": "150",
  "audit-lanes": "",
  "allowance-calls": "8",
});
const ALLOWANCE_CALLS = Number(args["allowance-calls"]);
const TASKS = Number(args.tasks);
const WORKERS = Number(args.workers);
const CONCURRENCY = Number(args.concurrency);
const BUDGET_TASKS = Number(args["budget-tasks"]);
/** Audit lanes of every run: by default one per worker process and one for the client. */
const AUDIT_LANES = args["audit-lanes"] ? Number(args["audit-lanes"]) : WORKERS + 1;

/** A master of the cluster: its address, its slot ranges and a direct connection for INFO. */
interface Master {
  name: string;
  ranges: [number, number][];
  conn: Redis;
}

async function mastersOf(ports: number[]): Promise<Master[]> {
  const probe = new Redis(ports[0] as number, "127.0.0.1");
  const slots = (await probe.cluster("SLOTS")) as unknown as [number, number, [string, number]][];
  probe.disconnect();
  const byPort = new Map<number, Master>();
  for (const [from, to, [host, port]] of slots) {
    const m = byPort.get(port) ?? { name: `${host}:${port}`, ranges: [], conn: new Redis(port, host) };
    m.ranges.push([from, to]);
    byPort.set(port, m);
  }
  return [...byPort.values()].sort((a, b) => (a.ranges[0]?.[0] ?? 0) - (b.ranges[0]?.[0] ?? 0));
}

const holds = (m: Master, slot: number) => m.ranges.some(([a, b]) => slot >= a && slot <= b);

async function cpuSeconds(masters: Master[]): Promise<number[]> {
  return Promise.all(
    masters.map(async (m) => {
      const info = await m.conn.info("cpu");
      const used = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1] ?? Number.NaN);
      return used("used_cpu_sys") + used("used_cpu_user");
    }),
  );
}

/** Polls until `done()` (a cheap count) reaches `n`. */
async function waitUntil(done: () => Promise<number>, n: number, timeoutMs = 900_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await done();
    if (now >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${now}/${n} finished in ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface RunResult {
  shards: number;
  /** AGENTRY_BUDGET_ALLOWANCE_CALLS of the run (0: a reserve and a settle per model call). */
  allowanceCalls: number;
  perSecond: number;
  cpu: number[];
  ceiling: number;
  placement: string[];
}

async function runAgentry(
  url: string,
  fakeUrl: string,
  masters: Master[],
  shards: number,
  label: string,
  allowanceCalls: number,
): Promise<RunResult> {
  const prefix = `{bench-${label}}`;
  const env = {
    AGENTRY_BUDGET_ALLOWANCE_CALLS: String(allowanceCalls),
    REDIS_URL: url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_SHARDS: String(shards),
    AGENTRY_AUDIT_LANES: String(AUDIT_LANES),
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "bench-key",
    ANTHROPIC_BASE_URL: fakeUrl,
    AGENTRY_CONCURRENCY: String(CONCURRENCY),
    AGENTRY_WORKER_PORT: "0",
    OTEL_EXPORTER_OTLP_ENDPOINT: "",
    LOG_LEVEL: "info",
  };
  const workers = await Promise.all(
    Array.from({ length: WORKERS }, (_, i) => startWorker(`shards-bench-${label}-${i + 1}`, env)),
  );
  const redis = createRedis({ url, role: "command" });
  const client = new AgentryClient({
    url,
    prefix,
    shards,
    sessionOrder: (p) => new RedisSessionTurns({ redis, prefix: p }),
  });
  try {
    for (const s of client.shards) await s.queue.waitUntilReady();
    const finished = async () => {
      const counts = await Promise.all(client.shards.map((s) => s.queue.getJobCounts("completed", "failed")));
      return counts.reduce((n, c) => n + (c.completed ?? 0) + (c.failed ?? 0), 0);
    };
    const before = await cpuSeconds(masters);
    const started = performance.now();
    for (let i = 0; i < TASKS; i += 50)
      await Promise.all(
        Array.from({ length: Math.min(50, TASKS - i) }, (_, k) =>
          client.submit(
            { prompt: weatherPrompt(i + k), sessionId: `s-${i + k}` },
            { tenant: `t${(i + k) % 4}` },
          ),
        ),
      );
    await waitUntil(finished, TASKS);
    const seconds = (performance.now() - started) / 1000;
    const after = await cpuSeconds(masters);
    const cpu = after.map((a, i) => a - (before[i] as number));
    const placement = masters.map((m) => {
      const here = [
        ...(holds(m, clusterSlot(`${prefix}:budget`)) ? ["global (ledger, tenants)"] : []),
        ...shardPrefixes(prefix, shards).flatMap((p, i) =>
          shards > 1 && holds(m, clusterSlot(p)) ? [`shard ${i}`] : [],
        ),
      ];
      return here.join(", ") || "-";
    });
    return {
      shards,
      allowanceCalls,
      perSecond: TASKS / seconds,
      cpu,
      ceiling: TASKS / Math.max(...cpu),
      placement,
    };
  } finally {
    await client.close();
    await stopWorkers(workers);
    redis.disconnect();
  }
}

/** No-op BullMQ jobs on one queue of the same cluster, same workers × concurrency, for scale. */
async function runBare(url: string, masters: Master[]): Promise<{ perSecond: number; cpuUsPerJob: number }> {
  const prefix = "{bench-bare}";
  const connection = createRedis({ url, role: "worker" });
  const queue = new Queue("bare", { connection, prefix });
  const workers = Array.from(
    { length: WORKERS },
    () =>
      new Worker("bare", async () => undefined, {
        connection: createRedis({ url, role: "worker" }),
        prefix,
        concurrency: CONCURRENCY,
      }),
  );
  try {
    await queue.waitUntilReady();
    const before = await cpuSeconds(masters);
    const started = performance.now();
    for (let i = 0; i < TASKS; i += 500)
      await queue.addBulk(
        Array.from({ length: Math.min(500, TASKS - i) }, (_, k) => ({
          name: "job",
          data: { i: i + k },
          opts: { removeOnComplete: 10_000 },
        })),
      );
    await waitUntil(async () => (await queue.getJobCounts("completed")).completed ?? 0, TASKS);
    const seconds = (performance.now() - started) / 1000;
    const after = await cpuSeconds(masters);
    const cpu = after.reduce((n, a, i) => n + a - (before[i] as number), 0);
    return { perSecond: TASKS / seconds, cpuUsPerJob: (cpu * 1e6) / TASKS };
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await queue.close();
    connection.disconnect();
  }
}

/** A global budget that a burst from every shard overruns: overshoot and ledger against billed. */
async function runBudget(
  url: string,
  fake: Awaited<ReturnType<typeof startFakeAnthropic>>,
  tokensPerTask: number,
): Promise<{ limit: number; used: number; billed: number; refused: number; completed: number }> {
  const prefix = "{bench-budget}";
  const env = {
    AGENTRY_BUDGET_ALLOWANCE_CALLS: String(ALLOWANCE_CALLS),
    REDIS_URL: url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_SHARDS: "3",
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "bench-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_CONCURRENCY: String(CONCURRENCY),
    AGENTRY_WORKER_PORT: "0",
    OTEL_EXPORTER_OTLP_ENDPOINT: "",
    LOG_LEVEL: "info",
  };
  const workers = await Promise.all(
    Array.from({ length: WORKERS }, (_, i) => startWorker(`shards-bench-budget-${i + 1}`, env)),
  );
  const redis = createRedis({ url, role: "command" });
  const client = new AgentryClient({
    url,
    prefix,
    shards: 3,
    sessionOrder: (p) => new RedisSessionTurns({ redis, prefix: p }),
  });
  const ledger = new BudgetLedger({ redis, prefix });
  try {
    const billedBefore = fake.billed().tokens;
    // About a third of what the burst would use, as billed per task in the runs before.
    const limit = Math.max(4_000, Math.floor((tokensPerTask * BUDGET_TASKS) / 3));
    await ledger.setLimit("global", { maxTokens: limit, period: "none" });
    const ids: string[] = [];
    for (let i = 0; i < BUDGET_TASKS; i++)
      ids.push(
        (await client.submit({ prompt: weatherPrompt(i), sessionId: `b-${i}` }, { tenant: `t${i % 4}` }))
          .taskId,
      );
    const outcomes = await Promise.all(
      ids.map((id) =>
        client.wait(id, { timeoutMs: 600_000 }).then(
          () => "completed",
          (err: { code?: string }) => err.code ?? "error",
        ),
      ),
    );
    // Every task has ended; the workers' allowances go back within a second of their last call.
    const deadline = Date.now() + 60_000;
    while ((await ledger.getStats("global")).reserved.tokens > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const stats = await ledger.getStats("global");
    if (stats.reserved.tokens > 0)
      throw new Error(`allowances not returned: ${stats.reserved.tokens} reserved`);
    return {
      limit,
      used: stats.used.tokens,
      billed: fake.billed().tokens - billedBefore,
      refused: outcomes.filter((o) => o === "BUDGET_EXCEEDED").length,
      completed: outcomes.filter((o) => o === "completed").length,
    };
  } finally {
    await client.close();
    await stopWorkers(workers);
    redis.disconnect();
  }
}

async function main(): Promise<void> {
  const cluster = await startRedisCluster({ nodes: 3 });
  const fake = await startFakeAnthropic({ handler: referenceReply });
  const masters = await mastersOf(cluster.ports);
  try {
    const one = await runAgentry(cluster.url, fake.url, masters, 1, "one", ALLOWANCE_CALLS);
    const three = await runAgentry(cluster.url, fake.url, masters, 3, "three", ALLOWANCE_CALLS);
    const perCall = await runAgentry(cluster.url, fake.url, masters, 3, "per-call", 0);
    const bare = await runBare(cluster.url, masters);
    const budget = await runBudget(cluster.url, fake, fake.billed().tokens / (2 * TASKS));
    const share = (r: RunResult, i: number) =>
      (100 * (r.cpu[i] as number)) / r.cpu.reduce((a, b) => a + b, 0);
    const runName = (r: RunResult) =>
      `${r.shards} shard${r.shards === 1 ? "" : "s"}, ${r.allowanceCalls > 0 ? `allowances of ${r.allowanceCalls} calls` : "ledger per call"}`;
    const rows: (string | number)[][] = [];
    for (const r of [one, three, perCall])
      masters.forEach((m, i) =>
        rows.push([
          runName(r),
          m.name,
          r.placement[i] as string,
          round(r.cpu[i] as number, 2),
          `${round(share(r, i), 1)} %`,
        ]),
      );
    process.stdout.write(
      `\n${TASKS} tasks, ${WORKERS} worker processes × concurrency ${CONCURRENCY}, AGENTRY_AUDIT_LANES=${AUDIT_LANES}, three-master cluster\n` +
        table(["run", "master", "holds", "Redis CPU s", "share"], rows) +
        "\n" +
        table(
          ["run", "tasks/s", "Redis CPU µs/task", "busiest master", "ceiling at 1 core/master"],
          [one, three, perCall].map((r) => [
            runName(r),
            round(r.perSecond),
            round((r.cpu.reduce((a, b) => a + b, 0) * 1e6) / TASKS),
            `${round(Math.max(...r.cpu.map((_, i) => share(r, i))), 1)} %`,
            `${round(r.ceiling)} tasks/s`,
          ]),
        ) +
        `\nbare BullMQ (one queue): ${round(bare.perSecond)} jobs/s, ${round(bare.cpuUsPerJob)} µs Redis CPU per job\n` +
        `budget: limit ${budget.limit} tokens, used ${budget.used}, billed ${budget.billed}, overshoot ${Math.max(0, budget.used - budget.limit)}; ${budget.completed} completed, ${budget.refused} refused for budget\n`,
    );
    const maxShare = (r: RunResult) => Math.max(...r.cpu.map((_, i) => share(r, i)));
    // The global slot's own work: its master's CPU beyond the mean of the masters holding only a shard.
    const globalShareOf = (r: RunResult) => {
      const at = r.placement.findIndex((p) => p.startsWith("global"));
      const others = r.cpu.filter((_, i) => i !== at);
      const extra = (r.cpu[at] as number) - others.reduce((x, y) => x + y, 0) / others.length;
      return { seconds: extra, share: (100 * extra) / r.cpu.reduce((x, y) => x + y, 0) };
    };
    const globalSlot = globalShareOf(three);
    const globalPerCall = globalShareOf(perCall);
    process.stdout.write(
      `global slot (ledger, tenant slots) with 3 shards: about ${round(globalSlot.seconds, 2)} s, ${round(globalSlot.share, 1)} % of the run's Redis CPU with allowances; ${round(globalPerCall.seconds, 2)} s, ${round(globalPerCall.share, 1)} % with the ledger per call (its master's CPU beyond the shard-only masters' mean)\n`,
    );
    const figures: Figure[] = [
      {
        label: "3 shards: busiest master's share of Redis CPU",
        value: round(maxShare(three), 1),
        unit: "%",
        note: `per master ${masters.map((_, i) => `${round(share(three, i), 1)} %`).join(" / ")}; budget allowances of ${ALLOWANCE_CALLS} calls`,
      },
      {
        label: "3 shards, ledger per model call (allowances off): busiest master's share",
        value: round(maxShare(perCall), 1),
        unit: "%",
        note: `per master ${masters.map((_, i) => `${round(share(perCall, i), 1)} %`).join(" / ")}`,
      },
      {
        label: "1 shard: busiest master's share of Redis CPU",
        value: round(maxShare(one), 1),
        unit: "%",
        note: `per master ${masters.map((_, i) => `${round(share(one, i), 1)} %`).join(" / ")}`,
      },
      {
        label: "global slot's share of Redis CPU, 3 shards, allowances / ledger per call",
        value: `${round(globalSlot.share, 1)} / ${round(globalPerCall.share, 1)}`,
        unit: "%",
        note: "its master's CPU beyond the mean of the shard-only masters: budget draws and returns (or every model call's reserve and settle), and tenant slots",
      },
      {
        label: "ceiling at one core per master, 3 shards ÷ 1 shard",
        value: round(three.ceiling / one.ceiling, 2),
        unit: "×",
        note: `${round(three.ceiling)} vs ${round(one.ceiling)} tasks/s; ledger per call: ${round(perCall.ceiling)} tasks/s`,
      },
      {
        label: "tasks/s on this machine, 3 shards / 1 shard",
        value: `${round(three.perSecond)} / ${round(one.perSecond)}`,
        unit: "tasks/s",
        note: `${WORKERS} worker processes × ${CONCURRENCY}`,
      },
      {
        label: "full task ÷ bare BullMQ job, tasks/s (3 shards)",
        value: round(three.perSecond / bare.perSecond, 3),
        note: `bare ${round(bare.perSecond)} jobs/s, ${round(bare.cpuUsPerJob)} µs Redis CPU per job`,
      },
      {
        label: "budget overshoot under contention from 3 shards",
        value: Math.max(0, budget.used - budget.limit),
        unit: "tokens",
        note: `limit ${budget.limit}, used ${budget.used}, billed ${budget.billed}; ${budget.refused} of ${BUDGET_TASKS} refused`,
      },
    ];
    if (budget.used !== budget.billed) throw new Error(`ledger ${budget.used} ≠ billed ${budget.billed}`);
    emitResult({
      name: "cluster-shards",
      command: commandLine("bench/runtime/cluster-shards.ts", process.argv.slice(2)),
      figures,
    });
  } finally {
    for (const m of masters) m.conn.disconnect();
    await fake.close();
    await cluster.stop();
  }
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
