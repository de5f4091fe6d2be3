import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";
import { Redis } from "ioredis";
import { shardPrefixes } from "@agentry/core";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient, BudgetLedger } from "@agentry/runtime";
import { AuditLog, type AuditEntry } from "@agentry/governance";
import {
  freePort,
  startFakeAnthropic,
  startRedisServer,
  type FakeAnthropic,
  type FakeReply,
  type RecordedRequest,
} from "@agentry/testkit";
import { deletionsKey } from "@agentry/reference";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "../worker-processes.js";
import { referenceReply } from "@agentry/reference/testing";

/**
 * Shared setup of the fault-injection suite: worker processes started from apps/worker/src/main.ts
 * exactly as in production, the real Anthropic SDK against the fake Messages API, a client and
 * readers for what a user checks afterwards (deletions, ledger, audit).
 *
 * Recovery settings are short so a dead worker's work moves on within seconds. Production
 * defaults and why they are longer:
 * - AGENTRY_LOCK_DURATION_MS 10 000 / AGENTRY_STALLED_INTERVAL_MS 5 000: a SIGKILLed worker's task
 *   is taken over within ~15 s, while a worker stuck in a long GC pause or a slow Redis round trip
 *   does not lose its lock to a false stall.
 * - AGENTRY_BUDGET_LEASE_MS 120 000: a reservation must outlive the slowest model call (long
 *   outputs take minutes); only then is it settled at its reserved amount.
 */
export const FAST_RECOVERY_ENV = {
  AGENTRY_LOCK_DURATION_MS: "2000",
  AGENTRY_STALLED_INTERVAL_MS: "1000",
  AGENTRY_BUDGET_LEASE_MS: "4000",
  AGENTRY_SHUTDOWN_GRACE_MS: "1000",
} as const;

/** Deletes in env "test" are allowed and production deletes denied: a side-effecting tool without approvals. */
export const PERMISSIVE_POLICY =
  "version: 1\npolicies:\n  - name: no-prod-delete\n    when:\n      tool: delete_resource\n      input:\n        env: production\n    then: deny\n    reason: Production deletes are forbidden\n";

/** Every `delete_resource` needs one approval from any enrolled approver, valid for an hour. */
export const APPROVAL_POLICY = [
  "version: 1",
  "defaults:",
  '  approvers: "*"',
  "  quorum: 1",
  "  ttl: 1h",
  "policies:",
  "  - name: delete-needs-approval",
  "    when:",
  "      tool: delete_resource",
  "    then: require_approval",
  "    reason: Deleting a resource needs a human approval",
  "",
].join("\n");

/** Writes a file into a fresh temporary directory and returns its path. */
export function writeTempFile(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "agentry-faults-")), name);
  writeFileSync(path, text);
  return path;
}

/** A deletion recorded by the reference `delete_resource` tool. */
export interface Deletion {
  resource: string;
  env: string;
  taskId: string;
  toolUseId: string;
}

/** One fault scenario's world: a fake provider, worker processes on one prefix, a client. */
export interface FaultCluster {
  prefix: string;
  env: Record<string, string>;
  fake: FakeAnthropic;
  client: AgentryClient;
  conn: Redis;
  ledger: BudgetLedger;
  /** The base prefix's chain, lane 0 (the only one with one shard and one lane). */
  audit: AuditLog;
  /** Every audit chain: the base prefix's, each shard's (with shards), each in every lane. */
  audits: AuditLog[];
  /** Each queue shard's prefix, shard 0 first (the base prefix alone with one shard). */
  shardPrefixes: string[];
  workers: WorkerProcess[];
  /** Starts a worker process (extra env on top of the cluster's) and waits until it runs. */
  startWorker(name: string, extraEnv?: Record<string, string>): Promise<WorkerProcess>;
  submit(prompt: string, options?: { userId?: string }): Promise<string>;
  deletions(): Promise<Deletion[]>;
  /** Every audit entry, each chain's in its order, chains one after another. */
  auditEntries(): Promise<AuditEntry[]>;
  /** Requests the fake received for the Messages endpoint. */
  modelRequests(): RecordedRequest[];
  close(): Promise<void>;
}

/** Options of {@link startFaultCluster}. */
export interface FaultClusterOptions {
  redisUrl: string;
  prefix: string;
  /** Decides each reply; `undefined` falls back to the reference rules. @defaultValue the reference rules */
  reply?: (request: RecordedRequest) => FakeReply | undefined;
  policyFile?: string;
  env?: Record<string, string>;
  /** Connection for reading state; made from `redisUrl` when not given. */
  conn: Redis;
  /** `AGENTRY_SHARDS` of the workers and the client. @defaultValue 1 */
  shards?: number;
  /** `AGENTRY_AUDIT_LANES` of the workers. @defaultValue 1 */
  auditLanes?: number;
}

/** The reference rules' answer (so a handler can wrap it, e.g. with a delay). */
export function demo(request: RecordedRequest, extra: { delayMs?: number } = {}): FakeReply {
  return { ...referenceReply(request), ...extra };
}

/** Starts the fake provider and a client; workers are started by the test, when it wants them. */
export async function startFaultCluster(options: FaultClusterOptions): Promise<FaultCluster> {
  const fake = await startFakeAnthropic({ handler: (req) => options.reply?.(req) ?? demo(req) });
  const { prefix, conn } = options;
  const shards = options.shards ?? 1;
  const lanes = options.auditLanes ?? 1;
  const env: Record<string, string> = {
    AGENTRY_SHARDS: String(shards),
    AGENTRY_AUDIT_LANES: String(lanes),
    REDIS_URL: options.redisUrl,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_POLICY_FILE: options.policyFile ?? writeTempFile("policy.yaml", PERMISSIVE_POLICY),
    AGENTRY_CONCURRENCY: "4",
    LOG_LEVEL: "info",
    ...FAST_RECOVERY_ENV,
    ...options.env,
  };
  const client = new AgentryClient({
    url: options.redisUrl,
    prefix,
    shards,
    sessionOrder: (p) => new RedisSessionTurns({ redis: conn, prefix: p }),
  });
  const workers: WorkerProcess[] = [];
  const audit = new AuditLog({ redis: conn, prefix });
  const shardKeys = shardPrefixes(prefix, shards);
  const chains = shards === 1 ? shardKeys : [prefix, ...shardKeys];
  const audits = chains.flatMap((p) =>
    Array.from({ length: lanes }, (_, lane) =>
      p === prefix && lane === 0 ? audit : new AuditLog({ redis: conn, prefix: p, lane }),
    ),
  );
  return {
    prefix,
    env,
    fake,
    client,
    conn,
    ledger: new BudgetLedger({ redis: conn, prefix }),
    audit,
    audits,
    shardPrefixes: shardKeys,
    workers,
    async startWorker(name, extraEnv = {}) {
      const w = startWorkerProcess(name, { ...env, ...extraEnv });
      workers.push(w);
      await waitStarted(w);
      return w;
    },
    async submit(prompt, submitOptions = {}) {
      return (
        await client.submit(
          { prompt, ...(submitOptions.userId ? { userId: submitOptions.userId } : {}) },
          { tenant: "acme" },
        )
      ).taskId;
    },
    async deletions() {
      return (await conn.lrange(deletionsKey(prefix), 0, -1)).map((x) => JSON.parse(x) as Deletion);
    },
    async auditEntries() {
      return (await Promise.all(audits.map((a) => a.read({ count: 100_000 })))).flat();
    },
    modelRequests: () => fake.requests.filter((r) => r.path === "/v1/messages"),
    async close() {
      await Promise.all(workers.splice(0).map((w) => w.kill()));
      await client.close();
      await fake.close();
    },
  };
}

/** Budget audit entries' `data` (event, reservationId, tokens, amount, ...). */
export interface BudgetEntryData {
  event: string;
  reservationId?: string;
  tokens?: number;
  costMicroUsd?: number;
  amount?: { tokens: number; costMicroUsd: number };
}

/** The budget entries of the audit log, optionally for one task. */
export function budgetEntries(
  entries: AuditEntry[],
  taskId?: string,
): (AuditEntry & { data: BudgetEntryData })[] {
  return entries.filter(
    (e) => e.type === "budget" && (taskId === undefined || e.taskId === taskId),
  ) as (AuditEntry & { data: BudgetEntryData })[];
}

/** Tool results (text and error flag) the model was sent, across all requests. */
export function toolResultsSent(
  requests: RecordedRequest[],
): { toolUseId: string; text: string; isError: boolean }[] {
  const out = new Map<string, { toolUseId: string; text: string; isError: boolean }>();
  for (const r of requests) {
    for (const m of r.body.messages ?? []) {
      if (typeof m.content === "string") continue;
      for (const b of m.content) {
        if (b.type !== "tool_result") continue;
        const text =
          typeof b.content === "string" ? b.content : (b.content ?? []).map((c) => c.text ?? "").join("\n");
        out.set(b.tool_use_id ?? "", { toolUseId: b.tool_use_id ?? "", text, isError: b.is_error === true });
      }
    }
  }
  return [...out.values()];
}

/** The producer HTTP API as its own process (apps/producer/src/main.ts), as in production. */
export interface ProducerProcess {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  kill(): Promise<void>;
}

const PRODUCER_MAIN = fileURLToPath(new URL("../../../producer/src/main.ts", import.meta.url));

/** Starts the producer on a free port with the given environment and waits until it listens. */
export async function startProducerProcess(
  env: Record<string, string>,
  timeoutMs = 120_000,
): Promise<ProducerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", PRODUCER_MAIN], {
    env: { ...process.env, LOG_LEVEL: "info", HOST: "127.0.0.1", PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + timeoutMs;
  const answers = () =>
    fetch(`http://127.0.0.1:${port}/healthz`).then(
      () => true,
      () => false,
    );
  while (!(await answers())) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`producer did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => out,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Per test: a redis-server of its own (a fault on it reaches no other suite), connections to it
 * (`connect`: no retry limit, errors swallowed) and the fault cluster the test hands to `use`;
 * all closed after the test.
 */
export function usePrivateRedis(): {
  /** Starts the server, with `args` for redis-server. */
  start(args?: string[]): Promise<{ url: string; connect(): Redis }>;
  use(cluster: FaultCluster): FaultCluster;
} {
  let server: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  let cluster: FaultCluster | undefined;
  const conns: Redis[] = [];
  afterEach(async () => {
    await cluster?.close();
    for (const c of conns.splice(0)) c.disconnect();
    await server?.stop();
    cluster = server = undefined;
  });
  return {
    async start(args = []) {
      server = await startRedisServer({ args });
      const { url } = server;
      return {
        url,
        connect() {
          const conn = new Redis(url, { maxRetriesPerRequest: null });
          conn.on("error", () => undefined);
          conns.push(conn);
          return conn;
        },
      };
    },
    use(c) {
      cluster = c;
      return c;
    },
  };
}

/**
 * Calls `fn` again while it fails and `retryOn` says the failure passes with time (by default
 * any failure: Redis coming back, a reply before it is ready), as a real caller told 503 would,
 * until `timeoutMs`.
 */
export async function eventually<T>(
  fn: () => Promise<T>,
  options: { timeoutMs?: number; retryOn?: (err: unknown) => boolean } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(options.retryOn?.(err) ?? true) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
