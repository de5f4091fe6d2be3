/**
 * `pnpm demo`: the whole system on one machine, no configuration. Plays the reference scenario
 * (`reference-scenario.ts`) through the real HTTP API, the `agentry` CLI, two worker processes
 * and Redis, and prints what happened.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { AgentryError, parseEnv } from "@agentry/core";
import { budgetScopeKind } from "@agentry/runtime";
import {
  FRUGAL_LIMIT_TOKENS,
  SCENARIO_APPROVER,
  approveAndFinish,
  askWeather,
  auditVerify,
  budgetRefusal,
  budgetShow,
  fanOut,
  freePort,
  parkStagingDelete,
  productionDelete,
  startReferenceSystem,
  stopProcesses,
  type ReferenceSystem,
} from "./reference-scenario.js";

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number) => (s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
const bold = paint(1);
const dim = paint(2);
const green = paint(32);
const yellow = paint(33);
const red = paint(31);
const cyan = paint(36);

const say = (s = "") => process.stdout.write(`${s}\n`);
const heading = (n: number, title: string) => say(`\n${bold(`${n}. ${title}`)}`);

const cleanups: (() => Promise<void> | void)[] = [];
let system: ReferenceSystem | undefined;
/** Stopped last, after the apps have exited and the demo's keys are deleted. */
let privateRedis: ChildProcess | undefined;
let redisDir: string | undefined;

async function answers(url: string): Promise<boolean> {
  const c = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  c.on("error", () => undefined);
  try {
    await c.connect();
    return (await c.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

/** REDIS_URL, else the local default if it answers, else a private redis-server. */
async function ensureRedis(): Promise<string> {
  if (process.env.REDIS_URL) {
    if (await answers(process.env.REDIS_URL)) return process.env.REDIS_URL;
    throw new Error(`REDIS_URL=${process.env.REDIS_URL} does not answer`);
  }
  if (await answers("redis://127.0.0.1:6379")) return "redis://127.0.0.1:6379";
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "agentry-demo-redis-"));
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: "ignore" },
  );
  const failed = new Promise<never>((_, reject) =>
    child.once("error", () =>
      reject(
        new Error(
          "No Redis answers on 127.0.0.1:6379 and redis-server is not installed. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL.",
        ),
      ),
    ),
  );
  privateRedis = child;
  const url = `redis://127.0.0.1:${port}`;
  redisDir = dir;
  for (let i = 0; i < 100; i++) {
    const ok = await Promise.race([answers(url), failed]);
    if (ok) {
      say(dim(`  started a private redis-server on port ${port}`));
      return url;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("redis-server did not start");
}

const usd = (micro: number) => `$${(micro / 1e6).toFixed(6)}`;

async function main(): Promise<void> {
  const env = parseEnv();
  say(bold("Agentry demo") + dim(" — queue-based agent runtime on Redis and BullMQ"));
  say(
    dim(
      `  model: ${env.AGENTRY_LLM === "anthropic" ? `Claude (${env.AGENTRY_MODEL ?? "claude-sonnet-4-5"})` : "ScriptedModel (offline; set ANTHROPIC_API_KEY to use Claude)"}`,
    ),
  );
  const redisUrl = await ensureRedis();
  const prefix = `agentry-demo-${Date.now().toString(36)}`;
  const work = mkdtempSync(join(tmpdir(), "agentry-demo-"));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  say(dim(`  redis: ${redisUrl}, key prefix: ${prefix}`));
  const logs = mkdtempSync(join(tmpdir(), "agentry-demo-logs-"));
  const sys = await startReferenceSystem({
    redisUrl,
    prefix,
    workDir: work,
    logDir: logs,
    env: {
      LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
      // Explicit, as workers require: Claude when a key is set, else the offline ScriptedModel.
      AGENTRY_LLM: env.AGENTRY_LLM,
      // Offline, the ScriptedModel streams its words at a visible pace.
      AGENTRY_SCRIPTED_DELTA_MS: "40",
    },
    onStarted: ({ name, pid, logFile }) => say(dim(`  started ${name} (pid ${pid}); logs: ${logFile}`)),
  });
  system = sys;

  heading(1, "A weather question, answered through a tool, its answer streamed as it is generated");
  process.stdout.write(`  ${green("answer (streamed):")} `);
  const weather = await askWeather(sys, {
    onText: (change) => {
      if (change.kind === "restart") process.stdout.write(`\n  ${dim("(retried)")} ${change.text}`);
      else if (change.kind !== "none") process.stdout.write(change.text);
    },
  });
  say();
  say(
    `  POST /v1/tasks → ${cyan(weather.taskId)}${weather.streamed === weather.answer ? dim(" (the stored result holds the same text)") : `; ${green("answer:")} ${weather.answer}`}`,
  );

  heading(2, "A fan-out: three tasks as one unit, on whichever worker is free");
  const group = await fanOut(sys);
  say(`  POST /v1/task-groups → group ${cyan(group.groupId)}`);
  for (const t of group.tasks) say(`  ${green("•")} ${t.status.result?.text ?? ""}`);

  heading(3, "A staging delete pauses for approval");
  const parked = await parkStagingDelete(sys);
  say(
    `  task ${cyan(parked.taskId)} is ${yellow("awaiting_approval")} (approval ${cyan(parked.approvalId)}); no worker slot is held`,
  );
  const record = await sys.approvals.get(parked.approvalId);
  say(dim(`  approvers: ${record?.approvers.join(", ")}, quorum ${record?.quorum}`));
  say(
    `  ${SCENARIO_APPROVER} approves: ${dim(`agentry approvals approve ${parked.approvalId} --as ${SCENARIO_APPROVER}`)}`,
  );
  const approved = await approveAndFinish(sys, parked.taskId, parked.approvalId);
  say(dim(`  ${approved.cli.stdout.trim()}`));
  say(`  ${green("resumed and finished:")} ${approved.answer}`);
  const deleted = await sys.deletions();
  say(
    dim(`  simulated deletions recorded: ${deleted.length} (${deleted.map((x) => x.resource).join(", ")})`),
  );

  heading(4, "A production delete is denied by policy");
  const prod = await productionDelete(sys);
  say(`  ${red("denied (no-prod-delete);")} the model was told and answered: ${prod.answer}`);

  heading(5, "A task refused for budget");
  say(dim(`  tenant frugal gets a daily limit of ${FRUGAL_LIMIT_TOKENS} tokens`));
  const refused = await budgetRefusal(sys);
  say(`  ${red(String(refused.status.error?.code))}: ${refused.status.error?.message}`);

  heading(6, "Resource stats per scope");
  const { stats: allStats } = await budgetShow(sys);
  const stats = allStats
    .filter((s) => budgetScopeKind(s.scope) !== "session")
    .sort((a, b) => a.scope.localeCompare(b.scope));
  for (const s of stats) {
    const limit = s.limit
      ? `${s.limit.maxTokens ?? "∞"} tokens / ${s.limit.maxCostMicroUsd === undefined ? "∞" : usd(s.limit.maxCostMicroUsd)} per ${s.limit.period}`
      : "no limit";
    say(
      `  ${s.scope.padEnd(28)} used ${String(s.used.tokens).padStart(6)} tokens ${usd(s.used.costMicroUsd).padStart(11)}   ${dim(limit)}`,
    );
  }
  if (allStats.length > stats.length)
    say(dim(`  (+ ${allStats.length - stats.length} session scopes: pnpm agentry budget show)`));

  heading(7, "Audit log");
  const verified = await auditVerify(sys);
  if (verified.code === 0)
    say(`  ${green("agentry audit verify:")} ${verified.stdout.trim()} (chained across both workers)`);
  else say(`  ${red("agentry audit verify failed")}: ${(verified.stdout + verified.stderr).trim()}`);
  const exported = join(logs, "audit.jsonl");
  await sys.audit.exportJsonl(exported);
  say(dim(`  exported to ${exported}`));
  const anchored =
    verified.code === 0 ? await sys.audit.anchor(join(logs, "audit-anchors.jsonl")) : undefined;
  if (anchored?.ok)
    say(
      dim(
        `  anchored seq ${anchored.anchor.seq} to ${join(logs, "audit-anchors.jsonl")} (agentry audit anchor; keep such a file outside Redis)`,
      ),
    );

  heading(8, "Traces");
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT)
    say(
      `  spans were exported over OTLP HTTP to ${env.OTEL_EXPORTER_OTLP_ENDPOINT} (open Jaeger at http://localhost:16686, service agentry-worker)`,
    );
  else
    say(
      `  tracing ran in-process (trace_id in every log line: ${logs}); set OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 with \`docker compose up jaeger\` to see them in Jaeger`,
    );
  say(`\n${green(bold("Demo finished."))}`);
  if (verified.code !== 0) process.exitCode = 1;
}

async function shutdown(): Promise<void> {
  // Apps first (they drain and exit) and the demo's keys, then its files, then a private Redis.
  try {
    await system?.stop({ dropKeys: true });
  } catch (err) {
    process.stderr.write(`clean-up: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (err) {
      process.stderr.write(`clean-up: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  if (privateRedis) await stopProcesses([privateRedis]);
  if (redisDir) rmSync(redisDir, { recursive: true, force: true });
}

main()
  .catch((err: unknown) => {
    const e = AgentryError.isInstance(err)
      ? `[${err.code}] ${err.message}`
      : err instanceof Error
        ? err.message
        : String(err);
    process.stderr.write(`\n${red("demo failed:")} ${e}\n`);
    process.exitCode = 1;
  })
  .finally(() => void shutdown().then(() => process.exit(process.exitCode ?? 0)));
