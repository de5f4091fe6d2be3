/**
 * `pnpm demo`: the whole system on one machine, no configuration. Plays the reference scenario
 * through the real HTTP API, two worker processes and Redis, and prints what happened.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { AgentryError, keySpace, parseEnv } from "@agentry/core";
import { BudgetLedger, budgetScopeKind } from "@agentry/runtime";
import { ApprovalStore, AuditLog, generateApproverKeyPair, signDecision } from "@agentry/governance";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
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

const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
/** Stopped last, after the apps have exited and the demo's keys are deleted. */
let privateRedis: ChildProcess | undefined;
let redisDir: string | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

async function answers(url: string): Promise<boolean> {
  const c = new Redis(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
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
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
  const failed = new Promise<never>((_, reject) =>
    child.once("error", () => reject(new Error("No Redis answers on 127.0.0.1:6379 and redis-server is not installed. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL."))),
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

function startApp(name: string, script: string, env: NodeJS.ProcessEnv, logFile: string): ChildProcess {
  const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", join(ROOT, script)], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    cwd: ROOT,
  });
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (b: Buffer) => chunks.push(b));
  child.stderr?.on("data", (b: Buffer) => chunks.push(b));
  child.on("exit", () => writeFileSync(logFile, Buffer.concat(chunks)));
  cleanups.push(() => writeFileSync(logFile, Buffer.concat(chunks)));
  children.push(child);
  say(dim(`  started ${name} (pid ${child.pid}); logs: ${logFile}`));
  return child;
}

async function waitHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up within ${timeoutMs / 1000} s`);
}

interface Api {
  post(path: string, body: unknown, key?: string): Promise<{ status: number; body: Record<string, unknown> }>;
  get(path: string, key?: string): Promise<{ status: number; body: Record<string, unknown> }>;
}

function api(base: string, defaultKey: string): Api {
  const call = async (method: string, path: string, body: unknown, key: string) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  return {
    post: (path, body, key = defaultKey) => call("POST", path, body, key),
    get: (path, key = defaultKey) => call("GET", path, undefined, key),
  };
}

async function waitTask(a: Api, taskId: string, key?: string, until: (s: Record<string, unknown>) => boolean = (s) => s.state === "completed" || s.state === "failed", timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { body } = await a.get(`/v1/tasks/${taskId}`, key);
    if (until(body)) return body;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`task ${taskId} did not reach the expected state in ${timeoutMs / 1000} s`);
}

const answerOf = (s: Record<string, unknown>) => String((s.result as { text?: string } | undefined)?.text ?? "");
const usd = (micro: number) => `$${(micro / 1e6).toFixed(6)}`;

async function main(): Promise<void> {
  const env = parseEnv();
  say(bold("Agentry demo") + dim(" — queue-based agent runtime on Redis and BullMQ"));
  say(dim(`  model: ${env.AGENTRY_LLM === "anthropic" ? `Claude (${env.AGENTRY_MODEL ?? "claude-sonnet-4-5"})` : "ScriptedModel (offline; set ANTHROPIC_API_KEY to use Claude)"}`));
  const redisUrl = await ensureRedis();
  const prefix = `agentry-demo-${Date.now().toString(36)}`;
  const work = mkdtempSync(join(tmpdir(), "agentry-demo-"));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  say(dim(`  redis: ${redisUrl}, key prefix: ${prefix}`));

  // The demo's own approver: a fresh Ed25519 key pair, enrolled in an approvers file.
  const approver = "demo-approver";
  const keys = generateApproverKeyPair();
  mkdirSync(join(work, "keys"), { recursive: true });
  writeFileSync(join(work, "keys", `${approver}.key`), keys.privateKey, { mode: 0o600 });
  writeFileSync(join(work, "approvers"), `${approver}: ${keys.publicKey}\n`);

  const port = await freePort();
  // The demo's own audit key, so its entries are authenticated (keep a real one in a secret store).
  const auditKey = randomBytes(32).toString("base64url");
  const common = {
    REDIS_URL: redisUrl,
    AGENTRY_PREFIX: prefix,
    AGENTRY_AUDIT_KEY: auditKey,
    AGENTRY_APPROVERS_FILE: join(work, "approvers"),
    LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
    AGENTRY_API_KEYS: "demo-key=acme,frugal-key=frugal",
    // Explicit, as workers require: Claude when a key is set, else the offline ScriptedModel.
    AGENTRY_LLM: env.AGENTRY_LLM,
  };
  const logs = mkdtempSync(join(tmpdir(), "agentry-demo-logs-"));
  startApp("producer", "apps/producer/src/main.ts", { ...common, PORT: String(port), HOST: "127.0.0.1" }, join(logs, "producer.log"));
  startApp("worker 1", "apps/worker/src/main.ts", { ...common, AGENTRY_WORKER_PORT: "0", AGENTRY_WORKER_NAME: "worker-1", AGENTRY_CONCURRENCY: "4" }, join(logs, "worker-1.log"));
  startApp("worker 2", "apps/worker/src/main.ts", { ...common, AGENTRY_WORKER_PORT: "0", AGENTRY_WORKER_NAME: "worker-2", AGENTRY_CONCURRENCY: "4" }, join(logs, "worker-2.log"));
  const base = `http://127.0.0.1:${port}`;
  await waitHttp(`${base}/healthz`);
  const a = api(base, "demo-key");

  const redis = new Redis(redisUrl);
  redis.on("error", () => undefined);
  cleanups.push(async () => {
    // Leave the shared Redis as we found it: drop every key of this run's prefix.
    let cursor = "0";
    do {
      const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (found.length > 0) await redis.unlink(...found);
    } while (cursor !== "0");
    redis.disconnect();
  });
  const ledger = new BudgetLedger({ redis, prefix });
  const approvals = new ApprovalStore({ redis, prefix });
  const audit = new AuditLog({ redis, prefix, key: auditKey });

  heading(1, "A weather question, answered through a tool");
  const w = await a.post("/v1/tasks", { prompt: "What's the weather like in Paris?", userId: "user-123", sessionId: "test-session" });
  say(`  POST /v1/tasks → ${w.status} ${cyan(String(w.body.taskId))}`);
  const weather = await waitTask(a, String(w.body.taskId));
  say(`  ${green("answer:")} ${answerOf(weather)}`);

  heading(2, "A fan-out: three tasks as one unit, on whichever worker is free");
  const cities = ["Tokyo", "Nairobi", "Lima"];
  const g = await a.post("/v1/task-groups", { tasks: cities.map((c) => ({ prompt: `What's the weather in ${c}?`, userId: "user-123" })) });
  say(`  POST /v1/task-groups → ${g.status} group ${cyan(String(g.body.groupId))}`);
  for (const id of (g.body.taskIds as string[]) ?? []) {
    const s = await waitTask(a, id);
    say(`  ${green("•")} ${answerOf(s)}`);
  }

  heading(3, "A staging delete pauses for approval");
  const d = await a.post("/v1/tasks", { prompt: "Please delete db-7 in staging", userId: "user-123" });
  const dId = String(d.body.taskId);
  const paused = await waitTask(a, dId, undefined, (s) => s.state === "awaiting_approval" || s.state === "completed" || s.state === "failed");
  const approvalId = ((paused.approvalIds as string[] | undefined) ?? [])[0];
  if (!approvalId) throw new Error(`expected the task to await approval, got ${JSON.stringify(paused)}`);
  say(`  task ${cyan(dId)} is ${yellow("awaiting_approval")} (approval ${cyan(approvalId)}); no worker slot is held`);
  const record = await approvals.get(approvalId);
  say(dim(`  approvers: ${record?.approvers.join(", ")}, quorum ${record?.quorum}`));
  say(`  ${approver} approves: ${dim(`agentry approvals approve ${approvalId} --as ${approver}`)}`);
  const decision = signDecision(keys.privateKey, { approvalId, outcome: "approve", approver, decidedAt: Date.now(), reason: "demo: staging cleanup is fine" });
  await approvals.decide(decision);
  const approved = await waitTask(a, dId);
  say(`  ${green("resumed and finished:")} ${answerOf(approved)}`);
  const deleted = await redis.lrange(keySpace(prefix).key("reference", "deletions"), 0, -1);
  say(dim(`  simulated deletions recorded: ${deleted.length} (${deleted.map((x) => JSON.parse(x).resource).join(", ")})`));

  heading(4, "A production delete is denied by policy");
  const p = await a.post("/v1/tasks", { prompt: "delete db-1 in production", userId: "user-123" });
  const prod = await waitTask(a, String(p.body.taskId));
  say(`  ${red("denied (no-prod-delete);")} the model was told and answered: ${answerOf(prod)}`);

  heading(5, "A task refused for budget");
  await ledger.setLimit("tenant:frugal", { maxTokens: 100, period: "day" });
  say(dim("  tenant frugal has a daily limit of 100 tokens"));
  const f = await a.post("/v1/tasks", { prompt: "Write me a long essay about Redis", userId: "penny" }, "frugal-key");
  const refused = await waitTask(a, String(f.body.taskId), "frugal-key");
  const err = refused.error as { code?: string; message?: string } | undefined;
  say(`  ${red(String(err?.code))}: ${err?.message}`);

  heading(6, "Resource stats per scope");
  const allScopes = (await ledger.listScopes()).sort();
  const scopes = allScopes.filter((s) => budgetScopeKind(s) !== "session");
  for (const scope of scopes) {
    const s = await ledger.getStats(scope);
    const limit = s.limit ? `${s.limit.maxTokens ?? "∞"} tokens / ${s.limit.maxCostMicroUsd === undefined ? "∞" : usd(s.limit.maxCostMicroUsd)} per ${s.limit.period}` : "no limit";
    say(`  ${scope.padEnd(28)} used ${String(s.used.tokens).padStart(6)} tokens ${usd(s.used.costMicroUsd).padStart(11)}   ${dim(limit)}`);
  }
  if (allScopes.length > scopes.length) say(dim(`  (+ ${allScopes.length - scopes.length} session scopes: pnpm agentry budget show)`));

  heading(7, "Audit log");
  const verdict = await audit.verify();
  if (verdict.ok) say(`  ${green("audit verify: chain intact")} (${verdict.count} entries, ${verdict.authenticated ? "HMAC-authenticated" : "unauthenticated"}, chained across both workers)`);
  else say(`  ${red("audit verify failed")}: ${JSON.stringify(verdict)}`);
  const exported = join(logs, "audit.jsonl");
  await audit.exportJsonl(exported);
  say(dim(`  exported to ${exported}`));
  const anchored = verdict.ok ? await audit.anchor(join(logs, "audit-anchors.jsonl")) : undefined;
  if (anchored?.ok) say(dim(`  anchored seq ${anchored.anchor.seq} to ${join(logs, "audit-anchors.jsonl")} (agentry audit anchor; keep such a file outside Redis)`));

  heading(8, "Traces");
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT) say(`  spans were exported over OTLP HTTP to ${env.OTEL_EXPORTER_OTLP_ENDPOINT} (open Jaeger at http://localhost:16686, service agentry-worker)`);
  else say(`  tracing ran in-process (trace_id in every log line: ${logs}); set OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 with \`docker compose up jaeger\` to see them in Jaeger`);
  say(`\n${green(bold("Demo finished."))}`);
  if (!verdict.ok) process.exitCode = 1;
}

function stopAll(list: ChildProcess[]): Promise<void[]> {
  for (const child of list) if (child.exitCode === null) child.kill("SIGTERM");
  return Promise.all(
    list.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const t = setTimeout(() => {
            child.kill("SIGKILL");
            resolve();
          }, 15_000);
          child.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
}

async function shutdown(): Promise<void> {
  // Apps first (they drain and exit), then the demo's own clean-up, then a private Redis.
  await stopAll(children);
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (err) {
      process.stderr.write(`clean-up: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  if (privateRedis) await stopAll([privateRedis]);
  if (redisDir) rmSync(redisDir, { recursive: true, force: true });
}

main()
  .catch((err: unknown) => {
    const e = AgentryError.isInstance(err) ? `[${err.code}] ${err.message}` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`\n${red("demo failed:")} ${e}\n`);
    process.exitCode = 1;
  })
  .finally(() => void shutdown().then(() => process.exit(process.exitCode ?? 0)));
