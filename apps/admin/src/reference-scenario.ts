/**
 * The reference scenario on real processes: a producer and two worker processes on one Redis
 * prefix, driven through the HTTP API and the `agentry` CLI. `pnpm demo` plays it and prints what
 * happened; `test/reference-scenario.test.ts` plays the same steps and checks them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { keySpace } from "@agentry/core";
import {
  BudgetLedger,
  StreamedText,
  type BudgetStats,
  type TaskStatus,
  type TextChange,
} from "@agentry/runtime";
import { ApprovalStore, AuditLog, generateApproverKeyPair } from "@agentry/governance";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** The API keys the scenario's producer accepts: `demo-key` for tenant `acme`, `frugal-key` for tenant `frugal`. */
export const SCENARIO_API_KEYS = { acme: "demo-key", frugal: "frugal-key" } as const;
/** The approver enrolled by {@link startReferenceSystem}. */
export const SCENARIO_APPROVER = "demo-approver";
/** The daily token limit of tenant `frugal` in the budget step. */
export const FRUGAL_LIMIT_TOKENS = 100;

/** Options for {@link startReferenceSystem}. */
export interface ReferenceSystemOptions {
  redisUrl: string;
  /** Key prefix of every app (`AGENTRY_PREFIX`). */
  prefix: string;
  /** Directory for the approver's key and the approvers file. */
  workDir: string;
  /** Each app's output is written to `<logDir>/<app>.log` when it exits. */
  logDir: string;
  /** Added to every app's and the CLI's environment (e.g. `AGENTRY_LLM`, `ANTHROPIC_BASE_URL`). */
  env?: Record<string, string>;
  /** `AGENTRY_CONCURRENCY` of each worker. @defaultValue 4 */
  concurrency?: number;
  /** `AGENTRY_GLOBAL_CONCURRENCY` of the queue (0: no cap). @defaultValue 0 */
  globalConcurrency?: number;
  /** Told about each app started (name, pid, log file). */
  onStarted?: (app: { name: string; pid: number | undefined; logFile: string }) => void;
}

/** A task's status as `GET /v1/tasks/:id` returns it. */
export type TaskView = TaskStatus;

/** One run of the real `agentry` CLI process. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A deletion recorded by the reference `delete_resource` tool. */
export interface Deletion {
  resource: string;
  env: string;
  taskId: string;
  toolUseId: string;
  at: string;
}

/** A running reference system and the parts a caller reads it through. */
export interface ReferenceSystem {
  baseUrl: string;
  prefix: string;
  /** The environment every app and the CLI share (Redis, prefix, audit key, approvers file). */
  env: Record<string, string>;
  /** The enrolled approver's private key file (for `agentry approvals approve --key`). */
  approverKeyFile: string;
  redis: Redis;
  ledger: BudgetLedger;
  approvals: ApprovalStore;
  audit: AuditLog;
  /** `POST` to the producer as the tenant of `key` (default `demo-key`). */
  post(path: string, body: unknown, key?: string): Promise<{ status: number; body: Record<string, unknown> }>;
  /** `GET` from the producer as the tenant of `key` (default `demo-key`). */
  get(path: string, key?: string): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Polls `GET /v1/tasks/:id` until `until` holds (default: completed or failed). */
  waitTask(
    taskId: string,
    options?: { key?: string; until?: (s: TaskView) => boolean; timeoutMs?: number },
  ): Promise<TaskView>;
  /** Runs `agentry <args>` as its own process with {@link ReferenceSystem.env}. */
  agentry(args: string[]): Promise<CliRun>;
  /** What the simulated `delete_resource` recorded, in order. */
  deletions(): Promise<Deletion[]>;
  /** Stops the apps (SIGTERM, then SIGKILL after 15 s) and closes the Redis connection; `dropKeys` deletes every key of the prefix first. */
  stop(options?: { dropKeys?: boolean }): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tsxArgs(script: string): string[] {
  return ["--conditions=@agentry/source", "--import", "tsx", join(ROOT, script)];
}

/** Stops processes with SIGTERM, then SIGKILL for any still running after `graceMs`. */
export function stopProcesses(list: ChildProcess[], graceMs = 15_000): Promise<void[]> {
  for (const child of list) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  return Promise.all(
    list.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const t = setTimeout(() => {
            child.kill("SIGKILL");
            resolve();
          }, graceMs);
          child.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
}

async function waitHttp(url: string, app: ChildProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (app.exitCode !== null) throw new Error(`${url}: the app exited with code ${app.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await pause(200);
  }
  throw new Error(`${url} did not come up within ${timeoutMs / 1000} s`);
}

/**
 * Starts the reference system: an approver key pair enrolled in an approvers file, a fresh
 * audit key, the producer on a free port and two worker processes (`worker-1`, `worker-2`).
 * Resolves once the producer answers `/healthz`.
 */
export async function startReferenceSystem(options: ReferenceSystemOptions): Promise<ReferenceSystem> {
  const { prefix, redisUrl } = options;
  const keys = generateApproverKeyPair();
  mkdirSync(join(options.workDir, "keys"), { recursive: true });
  const approverKeyFile = join(options.workDir, "keys", `${SCENARIO_APPROVER}.key`);
  writeFileSync(approverKeyFile, keys.privateKey, { mode: 0o600 });
  writeFileSync(join(options.workDir, "approvers"), `${SCENARIO_APPROVER}: ${keys.publicKey}\n`);
  // The system's own audit key, so its entries are authenticated (keep a real one in a secret store).
  const auditKey = randomBytes(32).toString("base64url");
  const env: Record<string, string> = {
    REDIS_URL: redisUrl,
    AGENTRY_PREFIX: prefix,
    AGENTRY_AUDIT_KEY: auditKey,
    AGENTRY_APPROVERS_FILE: join(options.workDir, "approvers"),
    // The CLI's key directory stays inside the work directory.
    HOME: options.workDir,
    ...options.env,
  };

  const children: ChildProcess[] = [];
  const start = (name: string, script: string, extra: Record<string, string>) => {
    const logFile = join(options.logDir, `${name}.log`);
    const child = spawn(process.execPath, tsxArgs(script), {
      env: {
        ...process.env,
        ...env,
        AGENTRY_API_KEYS: `${SCENARIO_API_KEYS.acme}=acme,${SCENARIO_API_KEYS.frugal}=frugal`,
        ...extra,
      },
      stdio: ["ignore", "pipe", "pipe"],
      cwd: ROOT,
    });
    const chunks: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => chunks.push(b));
    child.stderr?.on("data", (b: Buffer) => chunks.push(b));
    child.on("exit", () => writeFileSync(logFile, Buffer.concat(chunks)));
    children.push(child);
    options.onStarted?.({ name, pid: child.pid, logFile });
    return child;
  };
  const port = await freePort();
  const producer = start("producer", "apps/producer/src/main.ts", { PORT: String(port), HOST: "127.0.0.1" });
  const workerEnv = {
    AGENTRY_WORKER_PORT: "0",
    AGENTRY_CONCURRENCY: String(options.concurrency ?? 4),
    AGENTRY_GLOBAL_CONCURRENCY: String(options.globalConcurrency ?? 0),
  };
  start("worker-1", "apps/worker/src/main.ts", { ...workerEnv, AGENTRY_WORKER_NAME: "worker-1" });
  start("worker-2", "apps/worker/src/main.ts", { ...workerEnv, AGENTRY_WORKER_NAME: "worker-2" });
  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${baseUrl}/healthz`, producer);
  } catch (err) {
    await stopProcesses(children);
    throw err;
  }

  const redis = new Redis(redisUrl);
  redis.on("error", () => undefined);
  const call = async (method: string, path: string, body: unknown, key: string) => {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const get = (path: string, key: string = SCENARIO_API_KEYS.acme) => call("GET", path, undefined, key);
  return {
    baseUrl,
    prefix,
    env,
    approverKeyFile,
    redis,
    ledger: new BudgetLedger({ redis, prefix }),
    approvals: new ApprovalStore({ redis, prefix }),
    audit: new AuditLog({ redis, prefix, key: auditKey }),
    post: (path, body, key = SCENARIO_API_KEYS.acme) => call("POST", path, body, key),
    get,
    async waitTask(
      taskId,
      {
        key,
        until = (s: TaskView) => s.state === "completed" || s.state === "failed",
        timeoutMs = 120_000,
      } = {},
    ) {
      const deadline = Date.now() + timeoutMs;
      let last: TaskView | undefined;
      while (Date.now() < deadline) {
        last = (await get(`/v1/tasks/${taskId}`, key)).body as unknown as TaskView;
        if (until(last)) return last;
        await pause(150);
      }
      throw new Error(
        `task ${taskId} did not reach the expected state in ${timeoutMs / 1000} s (last: ${JSON.stringify(last)})`,
      );
    },
    agentry(args) {
      return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [...tsxArgs("apps/admin/src/cli.ts"), ...args], {
          env: { ...process.env, ...env },
          stdio: ["ignore", "pipe", "pipe"],
          cwd: ROOT,
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
        child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
        child.once("error", reject);
        child.once("close", (code) => resolve({ code, stdout, stderr }));
      });
    },
    async deletions() {
      return (await redis.lrange(keySpace(prefix).key("reference", "deletions"), 0, -1)).map(
        (x) => JSON.parse(x) as Deletion,
      );
    },
    async stop({ dropKeys = false } = {}) {
      // Apps first (they drain and exit), then this prefix's keys, then the connection.
      await stopProcesses(children);
      if (dropKeys) {
        let cursor = "0";
        do {
          const [next, found] = await redis.scan(cursor, "MATCH", keySpace(prefix).key("*"), "COUNT", 1000);
          cursor = next;
          if (found.length > 0) await redis.unlink(...found);
        } while (cursor !== "0");
      }
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

const answerOf = (s: TaskView) => s.result?.text ?? "";

/** Step 1: a weather question, answered through the `get_weather` tool. */
export async function askWeather(
  sys: ReferenceSystem,
  options: { onText?: (change: TextChange) => void } = {},
): Promise<{ taskId: string; status: TaskView; answer: string; streamed: string }> {
  const submitted = await sys.post("/v1/tasks", {
    prompt: "What's the weather like in Paris?",
    userId: "user-123",
    sessionId: "test-session",
  });
  const taskId = String(submitted.body.taskId);
  const [streamed, status] = await Promise.all([
    options.onText ? followText(sys, taskId, options.onText) : Promise.resolve(""),
    sys.waitTask(taskId),
  ]);
  return { taskId, status, answer: answerOf(status), streamed };
}

/**
 * Reads a task's server-sent events to their end, handing each change of the model's text to
 * `onText` as `delta` events arrive (placed by offset with `StreamedText`, so nothing repeats).
 * Resolves with the text of the last step that streamed.
 */
async function followText(
  sys: ReferenceSystem,
  taskId: string,
  onText: (change: TextChange) => void,
): Promise<string> {
  const res = await fetch(`${sys.baseUrl}/v1/tasks/${taskId}/events`, {
    headers: { authorization: `Bearer ${SCENARIO_API_KEYS.acme}` },
  });
  if (!res.ok || !res.body) throw new Error(`GET /v1/tasks/${taskId}/events answered ${res.status}`);
  const text = new StreamedText();
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!/^event: delta$/m.test(block) || data === undefined) continue;
      const change = text.apply(JSON.parse(data) as { step: number; offset: number; text: string });
      if (change.kind !== "none") onText(change);
    }
  }
  return text.text(text.steps().at(-1) ?? 0);
}

/** Step 2: a fan-out of one weather question per city, as one task group. */
export async function fanOut(
  sys: ReferenceSystem,
  cities: readonly string[] = ["Tokyo", "Nairobi", "Lima"],
): Promise<{ groupId: string; tasks: { taskId: string; city: string; status: TaskView }[] }> {
  const g = await sys.post("/v1/task-groups", {
    tasks: cities.map((c) => ({ prompt: `What's the weather in ${c}?`, userId: "user-123" })),
  });
  const taskIds = (g.body.taskIds as string[] | undefined) ?? [];
  const tasks = await Promise.all(
    taskIds.map(async (taskId, i) => ({ taskId, city: cities[i] ?? "", status: await sys.waitTask(taskId) })),
  );
  return { groupId: String(g.body.groupId), tasks };
}

/** Step 3a: a staging delete, submitted and waited for until it parks awaiting approval. */
export async function parkStagingDelete(
  sys: ReferenceSystem,
): Promise<{ taskId: string; approvalId: string; status: TaskView }> {
  const d = await sys.post("/v1/tasks", { prompt: "Please delete db-7 in staging", userId: "user-123" });
  const taskId = String(d.body.taskId);
  const status = await sys.waitTask(taskId, {
    until: (s) => s.state === "awaiting_approval" || s.state === "completed" || s.state === "failed",
  });
  const approvalId = status.approvalIds?.[0];
  if (status.state !== "awaiting_approval" || !approvalId)
    throw new Error(`expected the task to await approval, got ${JSON.stringify(status)}`);
  return { taskId, approvalId, status };
}

/** Step 3b: the enrolled approver approves with `agentry approvals approve`, signing with its key; then the task is waited for. */
export async function approveAndFinish(
  sys: ReferenceSystem,
  taskId: string,
  approvalId: string,
): Promise<{ cli: CliRun; status: TaskView; answer: string }> {
  const cli = await sys.agentry([
    "approvals",
    "approve",
    approvalId,
    "--as",
    SCENARIO_APPROVER,
    "--key",
    sys.approverKeyFile,
    "--reason",
    "demo: staging cleanup is fine",
  ]);
  if (cli.code !== 0) throw new Error(`agentry approvals approve exited ${cli.code}: ${cli.stderr}`);
  const status = await sys.waitTask(taskId);
  return { cli, status, answer: answerOf(status) };
}

/** Step 4: a production delete, which the default policy denies. */
export async function productionDelete(
  sys: ReferenceSystem,
): Promise<{ taskId: string; status: TaskView; answer: string }> {
  const p = await sys.post("/v1/tasks", { prompt: "delete db-1 in production", userId: "user-123" });
  const taskId = String(p.body.taskId);
  const status = await sys.waitTask(taskId);
  return { taskId, status, answer: answerOf(status) };
}

/** Step 5: tenant `frugal` gets a daily limit of {@link FRUGAL_LIMIT_TOKENS} tokens; its long task is refused for budget. */
export async function budgetRefusal(sys: ReferenceSystem): Promise<{ taskId: string; status: TaskView }> {
  await sys.ledger.setLimit("tenant:frugal", { maxTokens: FRUGAL_LIMIT_TOKENS, period: "day" });
  const f = await sys.post(
    "/v1/tasks",
    { prompt: "Write me a long essay about Redis", userId: "penny" },
    SCENARIO_API_KEYS.frugal,
  );
  const taskId = String(f.body.taskId);
  return { taskId, status: await sys.waitTask(taskId, { key: SCENARIO_API_KEYS.frugal }) };
}

/** Step 6: `agentry budget show --json`, every scope's limit and figures. */
export async function budgetShow(sys: ReferenceSystem): Promise<{ cli: CliRun; stats: BudgetStats[] }> {
  const cli = await sys.agentry(["budget", "show", "--json"]);
  if (cli.code !== 0) throw new Error(`agentry budget show exited ${cli.code}: ${cli.stderr}`);
  return { cli, stats: JSON.parse(cli.stdout) as BudgetStats[] };
}

/** Step 7: `agentry audit verify`, the whole chain. */
export function auditVerify(sys: ReferenceSystem): Promise<CliRun> {
  return sys.agentry(["audit", "verify"]);
}
