/**
 * Runs every Agentry benchmark in sequence against one private redis-server (or REDIS_URL when
 * set), prints each table as it goes and, after a full run, rewrites docs/benchmarks.md whole
 * with the figures, the date, the commit, the machine facts and, for each figure, the exact
 * command that made it. Every sentence of that file comes from here (a benchmark's `about` and
 * `note`, the closing NOTES) or from bench/lib/report.ts: prose belongs in the definitions, never
 * in the file, so a full run reproduces it and no figure survives the run that made it.
 *
 *   pnpm bench                      # everything, full sizes (~15-25 min); rewrites docs/benchmarks.md
 *   pnpm bench --quick              # small sizes, a smoke run well under a minute; writes nothing
 *   pnpm bench --only throughput    # one benchmark (comma-separated names allowed); writes nothing
 *   pnpm bench --quick --out FILE   # write the report to FILE instead (and its record to FILE.json)
 *   pnpm bench --render docs/benchmarks.json [--out FILE]
 *                                   # re-render a run's record (stdout without --out): the check
 *                                   # that docs/benchmarks.md is its render, nothing added by hand
 *
 * Names: throughput, fair-share, cluster-shards, redis-cost, approvals-pending, approval-resume, streaming, memory, budget, audit, vector-search, cli-startup.
 * Each benchmark is a script run as a child process (`node --conditions=@agentry/source --import
 * tsx <script>`) with REDIS_URL pointing at the run's Redis; with a private server the runner
 * flushes it between benchmarks (never a REDIS_URL it was given).
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { format, resolveConfig } from "prettier";
import { createRedis } from "../packages/core/src/index.js";
import { startRedisServer, redisAnswers, type TestRedisServer } from "../packages/testkit/src/index.js";
import { machineFacts } from "./lib/machine.js";
import { parseApprovalResume, parseAudit, parseBudget, parseVector } from "./lib/parsers.js";
import { renderFormatted, type BenchRecord, type BenchRun } from "./lib/report.js";
import { commandLine, parseResult, RESULT_MARKER, type Figure } from "./lib/result.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

interface Benchmark {
  name: string;
  title: string;
  /** What it measures and how, shown before the figures. */
  about: string;
  script: string;
  args: { full: string[]; quick: string[] };
  nodeFlags?: string[];
  /** Figures from printed output, for scripts without a BENCH_RESULT line. */
  parse?: (stdout: string) => Figure[];
  /** How to read the figures, shown after them: no numbers a run does not print. */
  note?: string;
}

const BENCHMARKS: Benchmark[] = [
  {
    name: "throughput",
    title: "Full agent tasks against bare BullMQ jobs",
    about:
      "Tasks/s of full agent tasks against no-op BullMQ jobs, same run, same Redis, same concurrency and job count, as a ratio. " +
      "A full task is the reference worker (`buildWorker`) in-process answering a weather prompt: " +
      "two model calls and one `get_weather` tool call, with the budget hooks and ledger (reserve and settle per call), governance " +
      "(default policy, audit log), session store and turns, tracing (`startTelemetry` in-process, no exporter, bullmq-otel spans), " +
      "metrics hooks, and the logger at `info` writing nowhere. Its model comes two ways, each its own row: the worker's ScriptedModel " +
      "(`AGENTRY_LLM=scripted`, zero latency), and the Anthropic adapter, the real `@anthropic-ai/sdk` streaming from the testkit's " +
      'fake Messages API, which runs in the benchmark process at zero latency and answers by the same rules ("full tasks through the ' +
      'SDK + fake API"): that row adds the HTTP, SSE and SDK work of a provider call, not its latency. Every task has its own session. ' +
      "The bare side is a BullMQ `Queue` + `Worker` whose processor returns at once, with the catalog's job options. Each side enqueues " +
      "every job first, then times from starting the worker to the last `completed` event; one warm-up round of each is not counted. " +
      "The ratios are the cost of the runtime per task over the queue alone, not a provider-bound production rate (a real model call " +
      "takes seconds).",
    script: "bench/runtime/throughput.ts",
    args: {
      full: ["--tasks", "2000", "--concurrency", "16,50"],
      quick: ["--tasks", "300", "--concurrency", "16,50"],
    },
  },
  {
    name: "fair-share",
    title: "Fair share between tenants: a flood, throughput and Redis work",
    about:
      "Two worker processes (`apps/worker/src/main.ts`, concurrency 25 each, the reference wiring) against the fake Messages API " +
      "through the real Anthropic SDK; a task is the weather prompt (two model calls, one tool call). Latency: model calls take " +
      "250 ms, as a provider's take seconds, so a task's run time is the model's and not CPU contention; tenant B submits 20 " +
      "tasks on an idle system (before and after the floods), then tenant A submits 3,000 and B 20 more, with fair share on and " +
      "then off (first in first out); B's submit → completion times (BullMQ `finishedOn`) are compared by their median and their " +
      "max (20 tasks are too few for a p99). Throughput: zero model latency, 2,000 tasks of four " +
      "tenants submitted one tenant after another into a paused queue, timed from resume to the last completion, on, off, off, " +
      "on, on, off, medians compared. Redis work: INFO commandstats and INFO cpu over each throughput run per task, and the fair-share calls alone (stamp, " +
      "base read, admit, release) run 5,000 times.",
    note:
      "How to read it. The latency ratio is the point: with fair share on, B's tasks behind A's flood should finish in about the " +
      "time they take alone (the target: B's slowest under the flood at most 2× its slowest alone), where first in first out " +
      "makes them wait for all of A's. The two modes' throughput runs do nearly the same Redis work (fair share off still stamps " +
      "and admits every task; only the priorities and the order differ), so on a shared machine the on ÷ off ratio moves with the " +
      "load more than with the mode: read it with the spread of the six runs in the printed output. What fair share adds per task " +
      "against a runtime without it is the last figure, the fair-share calls measured alone, to set against the Redis CPU of a " +
      "whole task in the row above it.",
    script: "bench/runtime/fair-share.ts",
    args: {
      full: ["--flood", "3000", "--late", "20", "--tasks", "2000", "--latency-ms", "250"],
      quick: ["--flood", "300", "--late", "10", "--tasks", "400", "--latency-ms", "100"],
    },
  },
  {
    name: "cluster-shards",
    title: "Queue shards on a three-master Redis Cluster",
    about:
      "A three-master Redis Cluster started for the run (redis-server processes joined with `redis-cli --cluster create`, " +
      "as the Cluster tests do; the run's own Redis is not used), the fake Messages API at zero latency through the real " +
      "Anthropic SDK, and three worker processes (`apps/worker/src/main.ts`, concurrency 24 each, `AGENTRY_AUDIT_LANES=4`: a " +
      "lane per worker and one for the client) consuming every shard. " +
      "A task is the weather prompt (two model calls, one tool call), each in its own session. The same tasks run with " +
      "AGENTRY_SHARDS=1 and then 3, both with budget allowances (`AGENTRY_BUDGET_ALLOWANCE_CALLS=8`: each worker process draws " +
      "8 calls' worth per budget scope and returns it settled; with 3 shards the global, tenant and user scopes from the " +
      "global ledger and a session's from its shard's), then with 3 shards and a reserve and a settle per model call " +
      "(allowances off; the session part on the shard's ledger), fresh prefixes and fresh workers each time, timed " +
      "from the first submit to the last completion, with INFO cpu (sys + user) read on every master before and after: each " +
      "master's share of the run's Redis CPU, and the ceiling at one core per master, tasks ÷ the busiest master's CPU " +
      "seconds. For scale, no-op BullMQ jobs on one queue of the same cluster with the same workers. Budget: a global limit a " +
      "burst of tasks from all three shards overruns, with allowances; overshoot is the ledger's use past the limit once " +
      "every task ended and the workers returned their allowances, and the ledger must then equal what the fake provider billed.",
    script: "bench/runtime/cluster-shards.ts",
    args: {
      full: ["--tasks", "1500", "--budget-tasks", "150"],
      quick: ["--tasks", "200", "--budget-tasks", "60"],
    },
  },
  {
    name: "redis-cost",
    title: "Redis work per agent task against a bare BullMQ job",
    about:
      "Redis INFO deltas per task, agent tasks against bare BullMQ no-op jobs, same run, same private redis-server (with the " +
      "shipped infra/redis/redis.conf's `hash-max-listpack-value 512`, as a deployment has it): CPU " +
      "(used_cpu_sys + used_cpu_user), commands (commandstats, inside scripts too), bytes sent to Redis (total_net_input_bytes) " +
      "and used_memory retained with the completed jobs kept. Agent side: two worker processes (`apps/worker/src/main.ts`, " +
      "concurrency 25 each, `AGENTRY_LLM=scripted`, the reference wiring, `AGENTRY_AUDIT_LANES=3`: a lane per worker and one " +
      "for the producer) run weather tasks (two model calls, one tool call) submitted with session order and fair share; then " +
      "the same with `AGENTRY_AUDIT_LANES=1` (both workers on one audit chain), CPU, commands and bytes only, and the same " +
      "with budget allowances (`AGENTRY_BUDGET_ALLOWANCE_CALLS=8`); each sample is taken once every budget reservation is " +
      "closed. The workers hold an audit key (`AGENTRY_AUDIT_KEY`), as a deployment does. Bare side: no-op " +
      "jobs with the catalog's job options, a worker at concurrency 50. Then the commandstats breakdown and MEMORY USAGE by " +
      "key family (retained once the keys of at most 1 h have expired is used_memory less their MEMORY USAGE: the completed " +
      "tasks' streams, 5 min, and the markers of closed budget reservations, 1 h), MONITOR " +
      "over 50 more tasks for the bytes by command and script, SLOWLOG of every command over 50 more for the execution " +
      "time by command and script (a script's with the commands it runs) and the commands clients send (over 50 more bare jobs too), then `agentry audit archive` of every lane (archiveChains: " +
      "anchor, files, trim) and the used_memory it frees per task, and a long task (a scripted model calling a tool with 4 KB " +
      "results in a loop) run alone at 10, 20 and 30 model calls: bytes sent to Redis for the whole task.",
    note:
      "How to read it. Of the targets of a third of the work, retained memory (≤ 2 KB + the result) is met once a task's " +
      "keys of at most an hour have expired and the audit log is archived, with BullMQ's events stream (10 000 entries in " +
      "all) counted apart as the fixed cost it is; CPU ≤ 4× and bytes ≤ 5× a bare job are not met, and the breakdown says " +
      "where the rest goes. Two counts bound the work, both taken the same way on both sides: the commands clients send " +
      "(the commands-sent row; each is read, parsed, run and answered) and the commands run inside scripts (the commands " +
      "row), and the CPU ratio is of their order. Part of Redis CPU is in no command but in serving the calls (socket reads " +
      "and writes, parsing: INFO cpu less what the SLOWLOG breakdown accounts for), the rest in the scripts, a microsecond or " +
      "two per command they run: a cut of a tenth of the commands run (the budget scripts read and write each usage hash " +
      "once) is within the run-to-run spread of CPU. Each guarantee a task keeps is at least one command sent of its " +
      "own: the session turn and its release, fair share's admission and hand-over, a budget reserve and settle per model " +
      "call with their audit entries, the tool call's claim and result, each step's fenced write, the session history; a " +
      "bare job sends a few. That is why CPU ≤ 4× is out of reach without dropping one of them. Every step is one fenced MULTI/EXEC (step log, progress, the step's " +
      "audit entries) and bytes grow linearly with steps (long task). What a bare job does not do and a task must: a tamper-" +
      "evident audit entry per request, decision, budget movement, action and response (HMAC-linked JSON with its content, " +
      "stored without the seq, previous hash and hash the stream gives: the largest share of bytes sent, several times a " +
      "bare job's bytes on their own), budget accounting on every scope and " +
      "period, session history, turns and fair share. With one audit lane two worker processes race for the chain head and a " +
      "lost race sends the whole step write again, which the lane-per-worker row removes; budget allowances take the per-call " +
      "reserve and settle off Redis (a draw and a return per 8 calls); archiving moves the audit entries, the largest share " +
      "of what a completed task keeps, to files. A completed task drops its step log, its once markers and the journal " +
      "entries of its tool calls. Of what stays, BullMQ's events stream is capped at 10 000 entries in all, so its share " +
      "per task falls once more than 10 000 tasks have run; the rest is the job (data, options and result, kept as the " +
      "queue's retention says), the session's history and its budget usage.",
    script: "bench/runtime/redis-cost.ts",
    args: {
      full: ["--tasks", "1000", "--long-steps", "10,20,30"],
      quick: ["--tasks", "200", "--long-steps", "10,20,30"],
    },
  },
  {
    name: "approvals-pending",
    title: "Throughput while 1,000 tasks wait for approval",
    about:
      "Weather tasks/s on a fresh in-process worker (concurrency 50, ScriptedModel) with nothing waiting (A1), after parking 1,000 " +
      "`delete_resource` tasks in staging that the default policy sends for approval (B: delayed jobs with pending approvals, " +
      "1 h expiry), and with nothing waiting again (A2). A timed run lasts a few seconds and the worker's default reconcile interval " +
      "is 5 s, so the benchmark sets it to 500 ms for all three: B's worker then runs the reconcile (once at start, then every " +
      "500 ms; each pass expires due approvals, wakes decisions whose event was missed and checks that every pending approval's task " +
      "still exists) while it works, and the passes inside each timed window are counted. The ratio is B ÷ mean(A1, A2); A1 and A2 " +
      "show the drift of the machine.",
    script: "bench/runtime/approvals-pending.ts",
    args: {
      full: ["--pending", "1000", "--tasks", "2000", "--concurrency", "50", "--reconcile-ms", "500"],
      quick: ["--pending", "100", "--tasks", "300", "--concurrency", "50", "--reconcile-ms", "500"],
    },
  },
  {
    name: "approval-resume",
    title: "Approval resume latency with 1,000 pending",
    about:
      "From a signed approval being recorded (`ApprovalStore.decide`) to the approved tool starting on a worker, with about 1,000 " +
      "approvals pending; 200 approvals made one at a time (a p99 needs 100 of them: the quick run's 20 give the max). Two " +
      "in-process reference workers × 32 slots, ScriptedModel. The path: pub/sub event → " +
      "promote → a worker takes the job → checkpoint restored → session turn → signature re-verified → audit append → tool.",
    script: "bench/approvals/resume-latency.ts",
    args: { full: ["--pending", "1000", "--approve", "200"], quick: ["--pending", "100", "--approve", "20"] },
    parse: parseApprovalResume,
  },
  {
    name: "streaming",
    title: "Streaming: a text delta from the provider to an SSE client, 100 tasks at once",
    about:
      "From the fake Messages API writing a `text_delta` event to its socket to an SSE client of the producer receiving that text, with " +
      "100 tasks streaming at once (200 words each, one word every 20 ms, about the pace of a real model; the headline counts the words " +
      "sent while all 100 were streaming, a second figure every word including the start-up burst). The path: the real SDK's stream " +
      "helper in one of 2 worker processes (`buildWorker` wiring, budget and governance hooks on) → the worker's text batcher (at most one " +
      "write per task every `AGENTRY_TEXT_FLUSH_MS`, 20 ms; text after a quiet interval goes at once) → the process's appender (the " +
      "appends of all its tasks within 5 ms leave as one pipeline) → the fenced append script (XADD " +
      "MAXLEN ~ + PEXPIRE + PUBLISH of a notice with the new entries) → the producer process's subscriber hands the notice to the task's SSE " +
      "connection, which sends its entries (an XRANGE only after a gap) as `delta` events. The " +
      "fake API and the 100 SSE clients (`node:http`) share the benchmark process, so both times come from one clock; every word is unique, " +
      "so each word gets its own latency, also when a batch carries several. A warm-up round of 10 tasks is not counted.",
    note:
      "How to read it. The target is a p99 under 50 ms with 100 tasks streaming at once. The split rows of the printed output " +
      "show where the time goes: send → XADD is the worker side (the SDK's parsing, the batcher, the appender's 5 ms tick, the " +
      "fenced write), XADD → receive is Redis to the client. The tail depends on the CPU the other processes leave the " +
      "workers, so read the p99 together with the load average printed beside it.",
    script: "bench/streaming/delta-latency.ts",
    args: {
      full: ["--tasks", "100", "--words", "200", "--event-delay-ms", "20"],
      quick: ["--tasks", "20", "--words", "100", "--event-delay-ms", "20"],
    },
  },
  {
    name: "memory",
    title: "Worker memory from 10k to 50k tasks",
    about:
      "RSS of one worker process (its own child, `--expose-gc`, concurrency 100, reference wiring, ScriptedModel weather tasks) idle, " +
      "after 10k and after 50k completed tasks, GC forced twice before each sample, the queue drained at each mark; and Redis " +
      "`used_memory` at the same marks. Completed jobs are trimmed by the catalog (10,000 kept), so the job hashes plateau; what " +
      "keeps growing in Redis is listed by key family (session history with a 7-day TTL, audit entries kept for good, budget " +
      "reservation markers kept 7 days, tool journals and once-markers, task streams for an hour after their last write). The model is the worker's own ScriptedModel (`AGENTRY_LLM=scripted`), " +
      "which keeps only its latest 1,000 requests: that log is full long before the first mark, so it is in the idle → 10k step " +
      "and not in the growth between the marks.",
    script: "bench/runtime/memory.ts",
    args: {
      full: ["--first", "10000", "--last", "50000", "--concurrency", "100"],
      quick: ["--first", "1000", "--last", "5000", "--concurrency", "100"],
    },
  },
  {
    name: "budget",
    title: "Budget ledger: reserve+settle pairs/s and overshoot",
    about:
      "Reserve+settle pairs per second on the budget ledger, each reservation covering four scopes (global, tenant, user, session), " +
      "from one process at concurrency 1, 16 and 64 and from 4 processes at concurrency 16 each; latencies are per pair, over " +
      "every pair. Then the same pairs through budget allowances (`AllowanceLedger`, 8 calls' worth per draw), one process " +
      "and 4, with the Redis script calls per pair (commandstats): a draw and a return per allowance instead of a reserve " +
      "and a settle per pair. Then 4 processes × 64 loops hammer a small budget until it is spent, on the ledger and " +
      "through allowances, and the overshoot past any limit is summed (must be 0 both times).",
    script: "bench/budget/reserve-settle.ts",
    args: { full: ["--seconds", "5"], quick: ["--seconds", "1"] },
    parse: parseBudget,
  },
  {
    name: "audit",
    title: "Audit log appends/s",
    about:
      "Hash-chained appends per second into one shared audit chain (SHA-256, compare-and-append Lua), from one process (1 and 16 " +
      "appends in flight) and from 4 processes (1 and 8 in flight each), latencies over every append; after each run the whole " +
      "chain is verified.",
    script: "bench/governance/audit-append.ts",
    args: { full: ["--seconds", "5"], quick: ["--seconds", "1"] },
    parse: parseAudit,
  },
  {
    name: "vector-search",
    title: "Vector memory search at 10k and 100k items",
    about:
      "RedisVectorMemory insert rate and top-5 search latency in one namespace with the local HashingEmbedder (512 dimensions): " +
      "30 searches one after another at each size, so their median and max (30 are too few for a p99). " +
      "On Redis 7 without RediSearch the search is brute force in a Lua script; the path used is printed.",
    script: "bench/memory/vector-search.ts",
    args: {
      full: ["--sizes", "10000,100000", "--queries", "30"],
      quick: ["--sizes", "2000", "--queries", "10"],
    },
    parse: parseVector,
  },
  {
    name: "cli-startup",
    title: "agentry CLI start-up, compiled against source",
    about:
      "Wall time from spawning `agentry` to its exit for `--version`, `--help` and `status <id>` (loads the runtime and BullMQ, " +
      "connects to Redis, finds no task), run as the installed command (`node_modules/.bin/agentry`: plain node on the compiled " +
      "dist/) and from source through tsx (what `pnpm agentry` runs, pnpm's own start-up shown apart), interleaved round by " +
      "round; medians, with `node -e 0` as the floor. Builds the CLI first when its dist/ is missing.",
    script: "bench/cli/startup.ts",
    args: { full: ["--runs", "15"], quick: ["--runs", "5"] },
  },
];

/** Known limits, printed at the end of docs/benchmarks.md. */
const NOTES = [
  "One machine runs everything: the benchmark process, the workers and Redis share its CPUs, and other work may run on it at the same time (load average above). Rates are lower bounds for a dedicated machine; the same-run ratios are what to compare between runs.",
  "Most runtime figures use the worker's ScriptedModel at zero latency, so they measure Agentry's own overhead per task (Redis round trips, Lua scripts, hashing, spans, JSON). The SDK row of `throughput`, `fair-share` and `streaming` go through the real Anthropic SDK against the testkit's fake Messages API instead, which adds the HTTP and SSE work of a provider call but not its latency. With a real provider a task spends seconds waiting on the model, and a worker's concurrency, not this overhead, bounds its rate.",
  "Where the workers run: in the benchmark process, beside its producer, for `throughput`, `approvals-pending` and `approval-resume`; in processes of their own for `memory` (one child) and for `fair-share` and `streaming` (two `apps/worker/src/main.ts` processes, what `pnpm worker` runs; `streaming` also runs the producer app as a process). In-process workers log at `info`, formatting every line but writing it nowhere, and record traces in-process without an exporter.",
  "`fair-share` gives model calls 250 ms in its latency figures, so a task's run time is the model's rather than this machine's CPU contention (at zero latency every task, B's included, slows with the load, whatever the order); its throughput figures use zero latency.",
  "Every task has its own session; a session's tasks run one at a time, so a workload with few long sessions is slower than this.",
  "Redis persistence is read from the server (machine table above); production runs with AOF on, which adds write cost to every figure here that writes.",
  "`memory`: Redis grows with every task (session history with a 7-day TTL, budget reservation markers kept 7 days, tool journals and once-markers, task streams for an hour after their last write, the audit stream kept for good; the counts per task are in its section); the job hashes alone plateau at the catalog's 10,000 completed.",
];

/** Figures shown in the summary table (prefix match on the label), in the order of the runs. */
const HEADLINE = [
  "ratio ",
  "full agent tasks/s",
  "full tasks/s through the SDK",
  "bare BullMQ no-op jobs/s",
  "tasks/s, none waiting",
  "tasks/s, 1",
  "approval approve → tool",
  "delta latency p50 /",
  "worker RSS after",
  "worker RSS growth",
  "Redis used_memory",
  "Redis work fair share adds",
  "3 shards: busiest master",
  "ceiling at one core per master",
  "budget overshoot under contention",
  "reserve+settle pairs/s, 4 processes",
  "reserve+settle pairs/s, 1 process, concurrency 16",
  "budget overshoot",
  "audit appends/s",
  "vector search",
  "agentry --version, compiled",
  "agentry --help, compiled",
];

function usage(message?: string): never {
  if (message) process.stderr.write(`bench: ${message}\n`);
  process.stderr.write(
    `usage: pnpm bench [--quick] [--only name[,name]] [--out FILE]\n       pnpm bench --render RECORD.json [--out FILE]\nnames: ${BENCHMARKS.map((b) => b.name).join(", ")}\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): {
  quick: boolean;
  only: string[] | undefined;
  out: string | undefined;
  render: string | undefined;
} {
  let quick = false;
  let only: string[] | undefined;
  let out: string | undefined;
  let render: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") quick = true;
    else if (a === "--only") only = (argv[++i] ?? usage("--only needs a name")).split(",");
    else if (a === "--out") out = argv[++i] ?? usage("--out needs a file");
    else if (a === "--render") render = argv[++i] ?? usage("--render needs a record file");
    else if (a === "--help" || a === "-h") usage();
    else if (a !== "--") usage(`unknown argument ${a}`);
  }
  for (const name of only ?? [])
    if (!BENCHMARKS.some((b) => b.name === name)) usage(`no benchmark named ${name}`);
  if (render && (quick || only)) usage("--render runs nothing: it takes no --quick or --only");
  return { quick, only, out, render };
}

/** Where a report's record goes: beside it, `.json` for `.md`. */
const recordPathOf = (report: string) => `${report.replace(/\.md$/, "")}.json`;

/** Writes a run's document and, beside it, the record it is rendered from (both through prettier). */
async function writeReport(target: string, record: BenchRecord): Promise<void> {
  const recordPath = recordPathOf(target);
  writeFileSync(target, await renderFormatted(record, target));
  writeFileSync(
    recordPath,
    await format(JSON.stringify(record), { ...(await resolveConfig(recordPath)), filepath: recordPath }),
  );
  process.stdout.write(`wrote ${target} and ${recordPath}\n`);
}

/** `--render`: the document of a recorded run, to `out` or stdout. */
async function render(recordPath: string, out: string | undefined): Promise<void> {
  const record = JSON.parse(readFileSync(recordPath, "utf8")) as BenchRecord;
  const text = await renderFormatted(record, out ?? recordPath.replace(/\.json$/, ".md"));
  if (out) writeFileSync(out, text);
  else process.stdout.write(text);
}

/** Runs one script, echoing its stdout (minus the result line) and stderr; resolves with its stdout. */
function runScript(
  b: Benchmark,
  args: string[],
  redisUrl: string,
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...(b.nodeFlags ?? []), "--conditions=@agentry/source", "--import", "tsx", b.script, ...args],
      {
        cwd: ROOT,
        env: { ...process.env, REDIS_URL: redisUrl },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let stdout = "";
    let pending = "";
    child.stdout.on("data", (d: Buffer) => {
      const text = d.toString();
      stdout += text;
      pending += text;
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      for (const line of parts) if (!line.startsWith(RESULT_MARKER)) process.stdout.write(`${line}\n`);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (pending && !pending.startsWith(RESULT_MARKER)) process.stdout.write(`${pending}\n`);
      resolve({ code: code ?? 1, stdout });
    });
  });
}

async function main(): Promise<void> {
  const { quick, only, out, render: recordToRender } = parseArgs(process.argv.slice(2));
  if (recordToRender) return render(recordToRender, out);
  const startedAt = performance.now();
  const given = process.env.REDIS_URL;
  let server: TestRedisServer | undefined;
  let url: string;
  if (given) {
    if (!(await redisAnswers(given))) usage(`REDIS_URL=${given} does not answer PING`);
    url = given;
  } else {
    server = await startRedisServer();
    url = server.url;
  }
  const redisKind = given ? "the REDIS_URL given" : "a private redis-server started by the runner";
  const admin = createRedis({ url });
  const facts = await machineFacts(admin, ROOT);
  process.stdout.write(
    `Agentry benchmarks${quick ? " (quick)" : ""}: ${facts.cpus} CPUs, ${facts.memoryGb} GB, load ${facts.loadAverage.join(" ")}, ` +
      `node ${facts.node}, redis ${facts.redis} at ${url}\n`,
  );
  const selected = BENCHMARKS.filter((b) => !only || only.includes(b.name));
  const runs: BenchRun[] = [];
  let failed = 0;
  try {
    for (const b of selected) {
      const args = quick ? b.args.quick : b.args.full;
      const command = commandLine(b.script, args, b.nodeFlags);
      process.stdout.write(`\n=== ${b.name}: ${command}\n`);
      if (!existsSync(join(ROOT, b.script))) {
        process.stdout.write(`(skipped: ${b.script} does not exist)\n`);
        runs.push({
          name: b.name,
          title: b.title,
          about: b.about,
          command,
          status: "missing",
          seconds: 0,
          figures: [],
          output: "",
        });
        continue;
      }
      if (server) await admin.flushall();
      const t0 = performance.now();
      const { code, stdout } = await runScript(b, args, url);
      const seconds = (performance.now() - t0) / 1000;
      const result = parseResult(stdout);
      const figures = result?.figures ?? b.parse?.(stdout) ?? [];
      if (code !== 0) failed += 1;
      process.stdout.write(
        `--- ${b.name}: ${code === 0 ? "ok" : `FAILED (exit ${code})`} in ${Math.round(seconds)} s, ${figures.length} figures\n`,
      );
      runs.push({
        name: b.name,
        title: b.title,
        about: b.about,
        command: result?.command ?? command,
        status: code === 0 ? "ok" : "failed",
        seconds,
        figures,
        output: stdout
          .split("\n")
          .filter((l) => !l.startsWith(RESULT_MARKER))
          .join("\n"),
        ...(b.note ? { note: b.note } : {}),
      });
    }
  } finally {
    await admin.quit();
    await server?.stop();
  }
  const totalSeconds = (performance.now() - startedAt) / 1000;
  const [l1, l5, l15] = os.loadavg() as [number, number, number];
  const r = (n: number) => Math.round(n * 100) / 100;
  process.stdout.write(
    `\nAll done in ${Math.round(totalSeconds)} s; ${failed} failed; ${runs.map((x) => `${x.name} ${Math.round(x.seconds)} s`).join(", ")}\n`,
  );
  const target = out ?? (!quick && !only ? join(ROOT, "docs", "benchmarks.md") : undefined);
  if (target) {
    const runCommand = `pnpm bench${quick ? " --quick" : ""}${only ? ` --only ${only.join(",")}` : ""}`;
    await writeReport(target, {
      facts,
      loadAtEnd: [r(l1), r(l5), r(l15)],
      runs,
      runCommand,
      redisKind,
      totalSeconds,
      headline: HEADLINE,
      notes: NOTES,
    });
  } else {
    process.stdout.write(
      "(docs/benchmarks.md is only rewritten by a full run of everything; use --out FILE to write this report)\n",
    );
  }
  if (failed > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
