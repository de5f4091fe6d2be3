/**
 * Redis work per agent task against a bare BullMQ job, from the server's own INFO:
 *
 *   node --conditions=@agentry/source --import tsx bench/runtime/redis-cost.ts [--tasks 1000] [--long-steps 10,20,30] [--tool-kb 4]
 *
 * One private redis-server. Bare side first: `--tasks` no-op BullMQ jobs (the catalog's job
 * options, a worker in this process at concurrency 50). Agent side: two worker processes
 * (apps/worker/src/main.ts, concurrency 25 each, `AGENTRY_LLM=scripted`, the reference wiring)
 * run `--tasks` weather tasks (two model calls, one `get_weather` call), submitted by a producer
 * client with session order and fair share. For each side, INFO deltas from before the submit
 * to the last completion, divided by the count: Redis CPU (used_cpu_sys + used_cpu_user),
 * commands (commandstats calls, inside scripts too), bytes received (total_net_input_bytes) and
 * `used_memory` retained with the completed jobs kept. Then where an agent task's commands and
 * retained bytes go: the commandstats breakdown and MEMORY USAGE by key family.
 *
 * Long task: one worker in this process (the task handler with session store, turns and the
 * audit log) runs, alone, a task whose model calls a tool `--long-steps` − 1 times (each result
 * `--tool-kb` KB) before answering; bytes received by Redis for the whole task at each length
 * show whether a checkpoint's cost grows with the step or with the conversation.
 *
 * Figures are server-wide: nothing else uses the private server.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { createRedis } from "../../packages/core/src/index.js";
import { ScriptedModel, scriptedTurn, type ScriptedRule } from "../../packages/llm/src/index.js";
import { ToolRegistry, defineTool } from "../../packages/agent/src/index.js";
import { RedisSessionStore, RedisSessionTurns } from "../../packages/memory/src/index.js";
import { AuditLog, archiveChains } from "../../packages/governance/src/index.js";
import {
  AgentWorker,
  AgentryClient,
  createAgentTaskHandler,
  jobOptionsFor,
} from "../../packages/runtime/src/index.js";
import { startRedisServer } from "../../packages/testkit/src/index.js";
import { bullmq } from "../lib/bullmq.js";
import { discardingLogger, flags, freshPrefix, weatherPrompt } from "../lib/agentry.js";
import { commandLine, emitResult, type Figure } from "../lib/result.js";
import { startWorker } from "../lib/worker-process.js";
import { round, table } from "../lib/stats.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The audit key of the agent side's workers, as a production deployment sets one. */
const AUDIT_KEY = "bench-redis-cost-audit-key-0123456789abcdef";
const args = flags({
  tasks: "1000",
  "long-steps": "10,20,30",
  "tool-kb": "4",
  workers: "2",
  concurrency: "25",
  "audit-lanes": "",
  "allowance-calls": "8",
});
/** Budget allowances of the comparison run (AGENTRY_BUDGET_ALLOWANCE_CALLS). */
const ALLOWANCE_CALLS = Number(args["allowance-calls"]);
const TASKS = Number(args.tasks);
const LONG_STEPS = args["long-steps"].split(",").map(Number);
const TOOL_BYTES = Number(args["tool-kb"]) * 1024;
const WORKERS = Number(args.workers);
const CONCURRENCY = Number(args.concurrency);
/** Audit lanes of the agent side: by default one per worker process and one for the producer. */
const AUDIT_LANES = args["audit-lanes"] ? Number(args["audit-lanes"]) : WORKERS + 1;

type RedisClient = ReturnType<typeof createRedis>;

/** SHA-1 → file name of every Lua script of the workspace, to name EVALSHA calls. */
const SCRIPTS = new Map<string, string>();
for (const pkg of readdirSync(join(ROOT, "packages"))) {
  const src = join(ROOT, "packages", pkg, "src");
  if (!existsSync(src)) continue;
  for (const file of readdirSync(src, { recursive: true, encoding: "utf8" }))
    if (file.endsWith(".lua"))
      SCRIPTS.set(
        createHash("sha1")
          .update(readFileSync(join(src, file)))
          .digest("hex"),
        file.slice(file.lastIndexOf("/") + 1),
      );
}

/** Server-wide counters, for deltas. */
interface Sample {
  cpu: number;
  calls: number;
  commands: Map<string, number>;
  /** Microseconds spent in each command (a script's time includes the commands it calls). */
  usec: Map<string, number>;
  inBytes: number;
  usedMemory: number;
}

async function sample(redis: RedisClient): Promise<Sample> {
  const info = await redis.info("all");
  const field = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1] ?? Number.NaN);
  const commands = new Map<string, number>();
  const usec = new Map<string, number>();
  let calls = 0;
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    // The measuring connection's own INFO calls are not the system's work.
    if (m[1] === "info") continue;
    commands.set(m[1] as string, Number(m[2]));
    usec.set(m[1] as string, Number(m[3]));
    calls += Number(m[2]);
  }
  return {
    cpu: field("used_cpu_sys") + field("used_cpu_user"),
    calls,
    commands,
    usec,
    inBytes: field("total_net_input_bytes"),
    usedMemory: field("used_memory"),
  };
}

interface PerJob {
  cpuUs: number;
  calls: number;
  inBytes: number;
  memory: number;
  /** Per command: calls and microseconds per job, most calls first. */
  commands: [string, number, number][];
}

function perJob(a: Sample, b: Sample, n: number): PerJob {
  const commands = [...b.commands]
    .map(([name, c]): [string, number, number] => [
      name,
      (c - (a.commands.get(name) ?? 0)) / n,
      ((b.usec.get(name) ?? 0) - (a.usec.get(name) ?? 0)) / n,
    ])
    .filter(([, c]) => c > 0)
    .sort((x, y) => y[1] - x[1]);
  return {
    cpuUs: ((b.cpu - a.cpu) * 1e6) / n,
    calls: (b.calls - a.calls) / n,
    inBytes: (b.inBytes - a.inBytes) / n,
    memory: (b.usedMemory - a.usedMemory) / n,
    commands,
  };
}

/** Waits until every job id is in `completed` (polling the completed set). */
async function allCompleted(redis: RedisClient, completedKey: string, n: number, timeoutMs = 600_000) {
  const deadline = Date.now() + timeoutMs;
  while ((await redis.zcard(completedKey)) < n) {
    if (Date.now() > deadline) throw new Error(`only ${await redis.zcard(completedKey)} of ${n} completed`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function bare(redis: RedisClient, url: string): Promise<PerJob & { clientCalls: number }> {
  const prefix = freshPrefix("bare");
  const queueConn = createRedis({ url, role: "producer" });
  const queue = new bullmq.Queue("tasks", { connection: queueConn, prefix });
  const workerConn = createRedis({ url, role: "worker" });
  const worker = new bullmq.Worker("tasks", async () => ({ ok: true }), {
    connection: workerConn,
    prefix,
    concurrency: WORKERS * CONCURRENCY,
  });
  await queue.waitUntilReady();
  await worker.waitUntilReady();
  const opts = jobOptionsFor("agent.run");
  const add = (i: number) =>
    queue.add(
      "agent.run",
      {
        payload: {
          prompt: weatherPrompt(i),
          tenant: "acme",
          userId: `u-${i % 50}`,
          sessionId: `s-${i}`,
          submittedAt: Date.now(),
        },
        parkCount: 0,
      },
      { attempts: opts.attempts, removeOnComplete: opts.removeOnComplete, removeOnFail: opts.removeOnFail },
    );
  // Warm-up, not counted.
  await Promise.all(Array.from({ length: 100 }, (_, i) => add(i)));
  await allCompleted(redis, `${prefix}:tasks:completed`, 100);
  const before = await sample(redis);
  for (let i = 0; i < TASKS; i += 100)
    await Promise.all(Array.from({ length: Math.min(100, TASKS - i) }, (_, j) => add(100 + i + j)));
  await allCompleted(redis, `${prefix}:tasks:completed`, 100 + TASKS);
  const after = await sample(redis);
  // The calls clients send per job (round trips; a script's commands are not calls), counted as
  // the agent side's are: SLOWLOG of every command over 50 more jobs, outside the measured run.
  const sampleJobs = 50;
  const logged = await slowlogOf(redis, async () => {
    await Promise.all(Array.from({ length: sampleJobs }, (_, j) => add(100 + TASKS + j)));
    await allCompleted(redis, `${prefix}:tasks:completed`, 100 + TASKS + sampleJobs);
  });
  await worker.close();
  await queue.close();
  await workerConn.quit();
  await queueConn.quit();
  return { ...perJob(before, after, TASKS), clientCalls: clientCalls(logged).calls / sampleJobs };
}

type SlowlogEntry = [number, number, number, string[], string];

/** Every command Redis ran while `run` ran (SLOWLOG with every command logged, then restored). */
async function slowlogOf(redis: RedisClient, run: () => Promise<void>): Promise<SlowlogEntry[]> {
  const slowlogMax = await redis.config("GET", "slowlog-max-len");
  const slowlogThreshold = await redis.config("GET", "slowlog-log-slower-than");
  await redis.config("SET", "slowlog-max-len", "1000000");
  await redis.config("SET", "slowlog-log-slower-than", "0");
  await redis.slowlog("RESET");
  try {
    await run();
    return (await redis.slowlog("GET", "-1")) as SlowlogEntry[];
  } finally {
    await redis.config("SET", "slowlog-log-slower-than", String(slowlogThreshold[1]));
    await redis.config("SET", "slowlog-max-len", String(slowlogMax[1]));
    await redis.slowlog("RESET");
  }
}

/**
 * The calls clients sent, from a SLOWLOG: by command (EVALSHA by script file), with their count
 * and execution time (a script's with the commands it runs), and in all. A command a script runs
 * is logged from no address and is not a call; the benchmark's own INFO, CONFIG and SLOWLOG are
 * left out.
 */
function clientCalls(logged: readonly SlowlogEntry[]): {
  calls: number;
  by: Map<string, { us: number; calls: number }>;
} {
  const by = new Map<string, { us: number; calls: number }>();
  let calls = 0;
  for (const [, , us, argv, client] of logged) {
    if (client === "?:0") continue;
    const name = String(argv[0]).toLowerCase();
    if (name === "info" || name === "config" || name === "slowlog") continue;
    const label = name === "evalsha" ? `evalsha ${SCRIPTS.get(String(argv[1])) ?? "(BullMQ)"}` : name;
    const row = by.get(label) ?? { us: 0, calls: 0 };
    row.us += us;
    row.calls += 1;
    by.set(label, row);
    calls += 1;
  }
  return { calls, by };
}

/** Keys that live at most this long are not what a completed task keeps (see `memoryByFamily`). */
const SHORT_LIVED_MS = 3_600_000;

/**
 * MEMORY USAGE of every key under `prefix`, by family (ids replaced by placeholders), and of the
 * keys among them that expire within {@link SHORT_LIVED_MS}.
 */
async function memoryByFamily(
  redis: RedisClient,
  prefix: string,
): Promise<{ families: Map<string, number>; shortLived: number }> {
  const families = new Map<string, number>();
  /** MEMORY USAGE of the keys that expire within the hour (task streams, closed budget markers). */
  let shortLived = 0;
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    for (const key of keys) {
      const bytes = Number(await redis.call("MEMORY", "USAGE", key, "SAMPLES", "0"));
      const family = `P${key
        .slice(prefix.length)
        .replace(/task_[0-9a-f]+/g, "<task>")
        .replace(/tenant:[^:]+:session:[^:]+/g, "<session>")
        .replace(/:u-\d+/g, ":<user>")
        .replace(/[0-9a-f]{16,}/g, "<id>")
        .replace(/\d+/g, "N")}`;
      families.set(family, (families.get(family) ?? 0) + bytes);
      const ttl = await redis.pttl(key);
      if (ttl > 0 && ttl <= SHORT_LIVED_MS) shortLived += bytes;
    }
  } while (cursor !== "0");
  return { families, shortLived };
}

async function agent(
  redis: RedisClient,
  url: string,
  laneCount: number,
  breakdown = true,
  allowanceCalls = 0,
) {
  const prefix = freshPrefix("cost");
  const env = {
    AGENTRY_AUDIT_KEY: AUDIT_KEY,
    AGENTRY_AUDIT_LANES: String(laneCount),
    AGENTRY_BUDGET_ALLOWANCE_CALLS: String(allowanceCalls),
    REDIS_URL: url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "scripted",
    AGENTRY_CONCURRENCY: String(CONCURRENCY),
    AGENTRY_WORKER_PORT: "0",
    OTEL_EXPORTER_OTLP_ENDPOINT: "",
    LOG_LEVEL: "info",
  };
  const workers = await Promise.all(
    Array.from({ length: WORKERS }, (_, i) => startWorker(`cost-bench-${i + 1}`, env)),
  );
  const client = new AgentryClient({
    url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis, prefix }),
    fairShare: true,
  });
  try {
    await client.queue.waitUntilReady();
    let serial = 0;
    const submit = async (n: number) => {
      for (let i = 0; i < n; i += 100)
        await Promise.all(
          Array.from({ length: Math.min(100, n - i) }, () => {
            const k = serial++;
            return client.submit(
              { prompt: weatherPrompt(k), sessionId: `s-${k}`, userId: `u-${k % 50}` },
              { tenant: "acme" },
            );
          }),
        );
    };
    // Warm-up: connections, script loads, JIT.
    // Each sample waits for every budget reservation to be closed too: with allowances, the
    // workers return theirs about a second after their last call, and that work is the tasks'.
    const budgetClosed = async () => {
      while ((await redis.zcard(`${prefix}:budget:leases`)) > 0) await new Promise((r) => setTimeout(r, 50));
    };
    await submit(100);
    await allCompleted(redis, `${prefix}:tasks:completed`, 100);
    await budgetClosed();
    const before = await sample(redis);
    await submit(TASKS);
    await allCompleted(redis, `${prefix}:tasks:completed`, 100 + TASKS);
    await budgetClosed();
    const after = await sample(redis);
    const ids = await redis.zrange(`${prefix}:tasks:completed`, "0", "-1");
    const results = await Promise.all(ids.map((id) => redis.hget(`${prefix}:tasks:${id}`, "returnvalue")));
    const resultBytes = results.reduce((s, r) => s + Buffer.byteLength(r ?? ""), 0) / ids.length;
    const { families, shortLived } = breakdown
      ? await memoryByFamily(redis, prefix)
      : { families: new Map<string, number>(), shortLived: 0 };
    if (!breakdown)
      return {
        cost: perJob(before, after, TASKS),
        resultBytes,
        families,
        shortLived,
        tasks: ids.length,
        bytes: [],
        cpu: undefined,
        archive: undefined,
      };
    // Where the bytes go: MONITOR (which slows Redis, so outside the measured run) over a few
    // more tasks, each command's RESP size summed by command and, for scripts, by script file.
    const watcher = redis.duplicate();
    const monitor = await watcher.monitor();
    const bytesBy = new Map<string, number>();
    monitor.on("monitor", (_time: string, argv: string[], source: string) => {
      const name = String(argv[0]).toLowerCase();
      // Commands a script runs are not sent by a client.
      if (name === "info" || name === "monitor" || source === "lua") return;
      const label = name === "evalsha" ? `evalsha ${SCRIPTS.get(String(argv[1])) ?? "(BullMQ)"}` : name;
      const size = argv.reduce(
        (n, a) => n + Buffer.byteLength(a) + String(Buffer.byteLength(a)).length + 5,
        3,
      );
      bytesBy.set(label, (bytesBy.get(label) ?? 0) + size);
    });
    const sampleTasks = 50;
    await submit(sampleTasks);
    await allCompleted(redis, `${prefix}:tasks:completed`, 100 + TASKS + sampleTasks);
    monitor.disconnect();
    watcher.disconnect();
    const bytes = [...bytesBy]
      .map(([label, n]): [string, number] => [label, n / sampleTasks])
      .sort((x, y) => y[1] - x[1]);
    // Where the CPU goes: SLOWLOG with every command logged (which costs Redis too, so outside
    // the measured run) over a few more tasks, each top-level command's execution time (a
    // script's with the commands it runs) by command and script; the rest of INFO cpu over the
    // same tasks is the server's own work: reading and writing its clients' sockets, parsing,
    // expiry and its event loop.
    let cpuBefore: Sample | undefined;
    let cpuAfter: Sample | undefined;
    const logged = await slowlogOf(redis, async () => {
      cpuBefore = await sample(redis);
      await submit(sampleTasks);
      await allCompleted(redis, `${prefix}:tasks:completed`, 100 + TASKS + 2 * sampleTasks);
      cpuAfter = await sample(redis);
    });
    const { calls: callCount, by: cpuBy } = clientCalls(logged);
    const cpu = {
      totalUs: perJob(cpuBefore as Sample, cpuAfter as Sample, sampleTasks).cpuUs,
      clientCalls: callCount / sampleTasks,
      by: [...cpuBy]
        .map(([label, r]): [string, number, number] => [label, r.calls / sampleTasks, r.us / sampleTasks])
        .sort((x, y) => y[2] - x[2]),
    };
    // What `agentry audit archive` gives back: every lane's entries moved to files, then Redis's
    // used_memory again. Per task over every task run so far (warm-up and MONITOR ones too).
    const lanes = Array.from(
      { length: laneCount },
      (_, lane) => new AuditLog({ redis, prefix, lane, key: AUDIT_KEY }),
    );
    const archiveDir = mkdtempSync(join(tmpdir(), "agentry-bench-archive-"));
    const unarchived = (await sample(redis)).usedMemory;
    const archiveStarted = performance.now();
    const archived = await archiveChains(
      lanes,
      lanes.map((_, i) => join(archiveDir, `audit.lane${i}.jsonl`)),
      join(archiveDir, "anchors.jsonl"),
    );
    const archiveSeconds = (performance.now() - archiveStarted) / 1000;
    if (!archived.ok) throw new Error(`audit archive failed: ${JSON.stringify(archived)}`);
    const archivedEntries = archived.chains.reduce((n, c) => n + c.appended, 0);
    const allTasks = 100 + TASKS + 2 * sampleTasks;
    const freedPerTask = (unarchived - (await sample(redis)).usedMemory) / allTasks;
    rmSync(archiveDir, { recursive: true, force: true });
    return {
      cost: perJob(before, after, TASKS),
      resultBytes,
      families,
      shortLived,
      tasks: ids.length,
      bytes,
      cpu,
      archive: { freedPerTask, entries: archivedEntries, seconds: archiveSeconds },
    };
  } finally {
    for (const w of workers) w.kill("SIGKILL");
    await client.close();
  }
}

/** A model that calls `fetch_page` until the prompt's number of calls is reached, then answers. */
const loopRule: ScriptedRule = (request) => {
  const first = request.messages[0];
  const prompt = typeof first?.content === "string" ? first.content : "";
  const steps = Number(/loop (\d+)/.exec(prompt)?.[1] ?? 1);
  const calls = request.messages.filter((m) => m.role === "assistant").length;
  if (calls + 1 >= steps || scriptedTurn(request).offered.size === 0)
    return { content: `Read ${calls} pages.`, stopReason: "end_turn" };
  return { content: [{ type: "tool_use", name: "fetch_page", input: { page: calls + 1 } }] };
};

/** Bytes Redis received for one task of `steps` model calls, run alone from submit to completion. */
async function longTasks(redis: RedisClient, url: string): Promise<{ steps: number; bytes: number }[]> {
  const prefix = freshPrefix("long");
  const page = "x".repeat(TOOL_BYTES);
  const tools = new ToolRegistry().register(
    defineTool({
      name: "fetch_page",
      description: "Fetches a page",
      input: z.object({ page: z.number() }),
      handler: ({ page: n }) => `page ${n}: ${page}`,
    }),
  );
  const own = createRedis({ url, role: "worker" });
  const handler = createAgentTaskHandler({
    model: new ScriptedModel({ rules: [loopRule] }),
    tools,
    redis: own,
    prefix,
    sessions: new RedisSessionStore({ redis: own, prefix }),
    turns: new RedisSessionTurns({ redis: own, prefix }),
    audit: new AuditLog({ redis: own, prefix }),
    maxSteps: Math.max(...LONG_STEPS),
  });
  const worker = new AgentWorker({
    url,
    prefix,
    concurrency: 1,
    handler,
    logger: discardingLogger("long-task-worker"),
  });
  const client = new AgentryClient({ url, prefix, sessionOrder: new RedisSessionTurns({ redis, prefix }) });
  await worker.start();
  const out: { steps: number; bytes: number }[] = [];
  try {
    let n = 0;
    for (const steps of [LONG_STEPS[0] as number, ...LONG_STEPS]) {
      const before = await sample(redis);
      await client.submit(
        { prompt: `loop ${steps}`, sessionId: `long-${n}`, userId: "u", maxSteps: Math.max(...LONG_STEPS) },
        { tenant: "acme" },
      );
      await allCompleted(redis, `${prefix}:tasks:completed`, ++n);
      const after = await sample(redis);
      // The first run warms up (script loads); it is not reported.
      if (n > 1) out.push({ steps, bytes: after.inBytes - before.inBytes });
    }
  } finally {
    await worker.close();
    await client.close();
    await own.quit();
  }
  return out;
}

/** The shipped infra/redis/redis.conf's encoding settings, so retained memory is a deployment's. */
function shippedEncodingArgs(): string[] {
  const conf = readFileSync(join(ROOT, "infra", "redis", "redis.conf"), "utf8");
  return [...conf.matchAll(/^(hash-max-listpack-\S+)\s+(\S+)/gm)].flatMap((m) => [
    `--${m[1]}`,
    m[2] as string,
  ]);
}

async function main(): Promise<void> {
  const server = await startRedisServer({ args: shippedEncodingArgs() });
  const redis = createRedis({ url: server.url });
  const figures: Figure[] = [];
  try {
    const b = await bare(redis, server.url);
    console.error(
      `  bare: ${round(b.cpuUs)} µs, ${round(b.calls, 1)} commands, ${round(b.inBytes)} B in per job`,
    );
    const a = await agent(redis, server.url, AUDIT_LANES);
    console.error(
      `  agent: ${round(a.cost.cpuUs)} µs, ${round(a.cost.calls, 1)} commands, ${round(a.cost.inBytes)} B in per task`,
    );
    // The same with one audit chain for every worker (AGENTRY_AUDIT_LANES=1), for comparison.
    const one = await agent(redis, server.url, 1, false);
    console.error(
      `  agent, one audit lane: ${round(one.cost.cpuUs)} µs, ${round(one.cost.calls, 1)} commands, ${round(one.cost.inBytes)} B in per task`,
    );
    // The same with budget allowances: a draw and a return per N calls instead of a reserve and
    // a settle per call.
    const drawn = await agent(redis, server.url, AUDIT_LANES, false, ALLOWANCE_CALLS);
    console.error(
      `  agent, allowances of ${ALLOWANCE_CALLS} calls: ${round(drawn.cost.cpuUs)} µs, ${round(drawn.cost.calls, 1)} commands, ${round(drawn.cost.inBytes)} B in per task`,
    );
    const long = await longTasks(redis, server.url);

    const rows: (string | number)[][] = [
      ["Redis CPU (µs)", round(b.cpuUs), round(a.cost.cpuUs), round(a.cost.cpuUs / b.cpuUs, 2)],
      ["commands", round(b.calls, 1), round(a.cost.calls, 1), round(a.cost.calls / b.calls, 2)],
      ["bytes sent to Redis", round(b.inBytes), round(a.cost.inBytes), round(a.cost.inBytes / b.inBytes, 2)],
      ["used_memory retained (B)", round(b.memory), round(a.cost.memory), round(a.cost.memory / b.memory, 2)],
    ];
    console.log(
      `\nRedis work per task, ${TASKS} tasks, ${WORKERS} worker processes × ${CONCURRENCY}, AGENTRY_AUDIT_LANES=${AUDIT_LANES}`,
    );
    console.log(table(["per task / job", "bare BullMQ", "agent task", "agent ÷ bare"], rows));
    console.log(`\nThe same with AGENTRY_AUDIT_LANES=1 (every worker process on one audit chain)`);
    console.log(
      table(
        ["per task / job", "bare BullMQ", "agent task", "agent ÷ bare"],
        [
          ["Redis CPU (µs)", round(b.cpuUs), round(one.cost.cpuUs), round(one.cost.cpuUs / b.cpuUs, 2)],
          ["commands", round(b.calls, 1), round(one.cost.calls, 1), round(one.cost.calls / b.calls, 2)],
          [
            "bytes sent to Redis",
            round(b.inBytes),
            round(one.cost.inBytes),
            round(one.cost.inBytes / b.inBytes, 2),
          ],
        ],
      ),
    );
    console.log(
      `\nThe same with budget allowances (AGENTRY_BUDGET_ALLOWANCE_CALLS=${ALLOWANCE_CALLS}, AGENTRY_AUDIT_LANES=${AUDIT_LANES})`,
    );
    console.log(
      table(
        ["per task / job", "bare BullMQ", "agent task", "agent ÷ bare"],
        [
          ["Redis CPU (µs)", round(b.cpuUs), round(drawn.cost.cpuUs), round(drawn.cost.cpuUs / b.cpuUs, 2)],
          ["commands", round(b.calls, 1), round(drawn.cost.calls, 1), round(drawn.cost.calls / b.calls, 2)],
          [
            "bytes sent to Redis",
            round(b.inBytes),
            round(drawn.cost.inBytes),
            round(drawn.cost.inBytes / b.inBytes, 2),
          ],
          [
            "used_memory retained (B)",
            round(b.memory),
            round(drawn.cost.memory),
            round(drawn.cost.memory / b.memory, 2),
          ],
        ],
      ),
    );
    console.log(`\nCommands per agent task (commandstats, inside scripts too)`);
    console.log(
      table(
        ["command", "calls per task", "µs per task", "calls per bare job", "µs per bare job"],
        a.cost.commands.slice(0, 25).map(([name, n, us]) => {
          const bareOf = b.commands.find(([c]) => c === name);
          return [name, round(n, 2), round(us, 1), round(bareOf?.[1] ?? 0, 2), round(bareOf?.[2] ?? 0, 1)];
        }),
      ),
    );
    const families = [...a.families].sort((x, y) => y[1] - x[1]);
    const perTask = (pattern: RegExp) =>
      families.filter(([k]) => pattern.test(k)).reduce((n, [, bytes]) => n + bytes, 0) / a.tasks;
    /** MEMORY USAGE of the task streams, per task: kept AGENTRY_TASK_STREAM_FINISHED_TTL_MS after completion. */
    const streamBytes = perTask(/^P:tasks:<task>:stream$/);
    /**
     * Per task, what expires within the hour: the task streams (5 min) and the markers of closed
     * budget reservations (1 h), which only the closer's own retries read.
     */
    const shortLivedBytes = a.shortLived / a.tasks;
    /** BullMQ's events stream: 10 000 entries in all, so its share per task falls as tasks grow. */
    const eventsBytes = perTask(/^P:tasks:events$/);
    console.log(`\nRetained bytes per completed task by key family (MEMORY USAGE ÷ ${a.tasks} tasks)`);
    console.log(
      table(
        ["key family", "bytes per task"],
        families.filter(([, bytes]) => bytes / a.tasks >= 1).map(([k, bytes]) => [k, round(bytes / a.tasks)]),
      ),
    );
    console.log(`result (returnvalue) ${round(a.resultBytes)} B per task`);
    console.log(
      `retained once the keys of at most 1 h expired (task streams 5 min after completion, ${round(streamBytes)} B; closed budget markers 1 h, ${round(shortLivedBytes - streamBytes)} B): ${round(
        a.cost.memory - shortLivedBytes,
      )} B per task`,
    );
    const archive = a.archive;
    if (archive) {
      console.log(
        `\nagentry audit archive: ${archive.entries} entries to files in ${round(archive.seconds, 2)} s; used_memory freed ${round(archive.freedPerTask)} B per task`,
      );
      console.log(
        `retained once the keys of at most 1 h expired and the audit log was archived: ${round(a.cost.memory - shortLivedBytes - archive.freedPerTask)} B per task (result ${round(a.resultBytes)} B; BullMQ's events stream, capped at 10 000 entries in all, ${round(eventsBytes)} B of it at ${a.tasks} tasks)`,
      );
    }
    console.log(`\nBytes sent to Redis per agent task by command and script (MONITOR over 50 more tasks)`);
    console.log(
      table(
        ["command / script", "bytes per task"],
        a.bytes.filter(([, n]) => n >= 10).map(([label, n]) => [label, round(n)]),
      ),
    );
    const cpu = a.cpu;
    if (cpu) {
      const inCommands = cpu.by.reduce((n, [, , us]) => n + us, 0);
      console.log(
        `\nRedis CPU per agent task by command and script (SLOWLOG of every command over 50 more tasks): ${round(inCommands)} µs in commands of ${round(cpu.totalUs)} µs INFO cpu, the rest the server's socket I/O, parsing and event loop; a script's time includes logging the commands it runs, so read the shares`,
      );
      console.log(
        table(
          ["command / script", "calls per task", "µs per task"],
          cpu.by
            .filter(([, , us]) => us >= 1)
            .map(([label, calls, us]) => [label, round(calls, 2), round(us)]),
        ),
      );
      console.log(
        `commands clients sent (each of a MULTI/EXEC block counted; a script's own commands not): ${round(cpu.clientCalls, 1)} per agent task, ${round(b.clientCalls, 1)} per bare job (ratio ${round(cpu.clientCalls / b.clientCalls, 2)})`,
      );
    }
    const first = long[0];
    console.log(`\nLong task: bytes sent to Redis for the whole task (tool results ${TOOL_BYTES} B)`);
    console.log(
      table(
        ["model calls", "bytes", `÷ bytes at ${first?.steps}`],
        long.map((l) => [l.steps, String(l.bytes), round(l.bytes / (first?.bytes ?? 1), 2)]),
      ),
    );

    figures.push(
      {
        label: "Redis CPU per task, agent / bare",
        value: `${round(a.cost.cpuUs)} / ${round(b.cpuUs)}`,
        unit: "µs",
        note: `ratio ${round(a.cost.cpuUs / b.cpuUs, 2)} (target ≤ 4); AGENTRY_AUDIT_LANES=${AUDIT_LANES}`,
      },
      {
        label: "Redis CPU and bytes per task with one audit lane (AGENTRY_AUDIT_LANES=1)",
        value: `${round(one.cost.cpuUs)} µs, ${round(one.cost.inBytes)} B`,
        note: `ratios ${round(one.cost.cpuUs / b.cpuUs, 2)} and ${round(one.cost.inBytes / b.inBytes, 2)} to a bare job`,
      },
      {
        label: `Redis CPU, bytes and retained memory per task with budget allowances (AGENTRY_BUDGET_ALLOWANCE_CALLS=${ALLOWANCE_CALLS})`,
        value: `${round(drawn.cost.cpuUs)} µs, ${round(drawn.cost.inBytes)} B, ${round(drawn.cost.memory)} B`,
        note: `ratios ${round(drawn.cost.cpuUs / b.cpuUs, 2)}, ${round(drawn.cost.inBytes / b.inBytes, 2)} and ${round(drawn.cost.memory / b.memory, 2)} to a bare job; AGENTRY_AUDIT_LANES=${AUDIT_LANES}`,
      },
      ...(a.archive
        ? [
            {
              label:
                "retained per completed task once its keys of at most 1 h expired and the audit log was archived",
              value: round(a.cost.memory - shortLivedBytes - a.archive.freedPerTask),
              unit: "B",
              note: `agentry audit archive freed ${round(a.archive.freedPerTask)} B per task (${a.archive.entries} entries to files in ${round(a.archive.seconds, 2)} s); result ${round(a.resultBytes)} B (target ≤ 2 KB + result); of it BullMQ's events stream ${round(eventsBytes)} B (10 000 entries in all, whatever the number of tasks; ${a.tasks} tasks here)`,
            },
            {
              label:
                "the same, less BullMQ's events stream (10 000 entries in all: a fixed cost, not a task's)",
              value: round(a.cost.memory - shortLivedBytes - a.archive.freedPerTask - eventsBytes),
              unit: "B",
              note: `the job (data, options, result ${round(a.resultBytes)} B), its place in the completed set, the session's history and its budget usage (target ≤ 2 KB + result = ${2048 + round(a.resultBytes)} B)`,
            },
          ]
        : []),
      ...(a.cpu
        ? [
            {
              label: "commands clients send to Redis per task, agent / bare",
              value: `${round(a.cpu.clientCalls, 1)} / ${round(b.clientCalls, 1)}`,
              note: `ratio ${round(a.cpu.clientCalls / b.clientCalls, 2)}; SLOWLOG of every command over 50 more of each: each command of a MULTI/EXEC block counted, a script's own commands not`,
            },
          ]
        : []),
      {
        label: "Redis commands per task, agent / bare",
        value: `${round(a.cost.calls, 1)} / ${round(b.calls, 1)}`,
        note: `ratio ${round(a.cost.calls / b.calls, 2)}`,
      },
      {
        label: "bytes sent to Redis per task, agent / bare",
        value: `${round(a.cost.inBytes)} / ${round(b.inBytes)}`,
        unit: "B",
        note: `ratio ${round(a.cost.inBytes / b.inBytes, 2)} (target ≤ 5)`,
      },
      {
        label: "used_memory retained per completed task, agent / bare",
        value: `${round(a.cost.memory)} / ${round(b.memory)}`,
        unit: "B",
        note: `result ${round(a.resultBytes)} B (target ≤ 2 KB + result)`,
      },
      {
        label: "retained per completed task once its keys of at most 1 h expired",
        value: round(a.cost.memory - shortLivedBytes),
        unit: "B",
        note: `used_memory retained less the MEMORY USAGE of keys with a TTL of at most 1 h: task streams (5 min after completion, ${round(streamBytes)} B per task) and closed budget markers (1 h, ${round(shortLivedBytes - streamBytes)} B)`,
      },
      ...long.map((l) => ({
        label: `long task, ${l.steps} model calls, bytes sent to Redis`,
        value: l.bytes,
        unit: "B",
        note: `${round(l.bytes / (first?.bytes ?? 1), 2)} × the ${first?.steps}-call task; tool results ${TOOL_BYTES} B`,
      })),
    );
  } finally {
    await redis.quit();
    await server.stop();
  }
  emitResult({
    name: "redis-cost",
    command: commandLine("bench/runtime/redis-cost.ts", [
      "--tasks",
      String(TASKS),
      "--long-steps",
      LONG_STEPS.join(","),
      "--audit-lanes",
      String(AUDIT_LANES),
      "--allowance-calls",
      String(ALLOWANCE_CALLS),
    ]),
    figures,
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
