/**
 * Wiring shared by the runtime benchmarks: the reference worker built in-process (on the offline
 * scripted model, or the real Anthropic SDK against a fake Messages API), a producer client, completion counting and Redis clean-up. Workspace packages
 * are imported by relative path to their `src/index.ts` because bench/ is not a workspace
 * package (bare `@agentry/*` names do not resolve from here).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRedis, type Logger } from "../../packages/core/src/index.js";
import { RedisSessionTurns } from "../../packages/memory/src/index.js";
import { AgentryClient, createBullMQTelemetry, createTaskLogger } from "../../packages/runtime/src/index.js";
import { createTestApprovers } from "../../packages/governance/src/testing.js";
import { buildWorker, type BuiltWorker } from "../../apps/worker/src/build-worker.js";
import { parseWorkerConfig } from "../../apps/worker/src/config.js";

type RedisClient = ReturnType<typeof createRedis>;

/**
 * The worker's logger at `info`, as in production (every line formatted, trace ids mixed in),
 * written nowhere so the terminal and the disk are not part of the measurement.
 */
export function discardingLogger(name: string): Logger {
  return createTaskLogger({ name, level: "info", destination: { write: () => undefined } });
}

/** A fresh key prefix for one measurement. */
export function freshPrefix(label: string): string {
  return `bench-${label}-${randomBytes(3).toString("hex")}`;
}

/** Counts the BullMQ worker's finished jobs (completed, and failed attempts). */
export class Completions {
  completed = 0;
  failed = 0;
  lastFailure: string | undefined;
  #waiters: { n: number; resolve: () => void }[] = [];

  constructor(worker: BuiltWorker) {
    worker.worker.worker.on("completed", () => {
      this.completed += 1;
      this.#wake();
    });
    worker.worker.worker.on("failed", (_job, err) => {
      this.failed += 1;
      this.lastFailure = err.message;
    });
  }

  /** Resolves once `n` jobs completed; rejects after `timeoutMs`. */
  async waitFor(n: number, timeoutMs = 600_000): Promise<void> {
    if (this.completed >= n) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `only ${this.completed}/${n} tasks completed in ${timeoutMs / 1000} s (${this.failed} failed attempts; last: ${this.lastFailure ?? "none"})`,
            ),
          ),
        timeoutMs,
      );
      this.#waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  #wake(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (this.completed < w.n) return true;
      w.resolve();
      return false;
    });
  }
}

/** Options for {@link startFullWorker}. */
export interface FullWorkerOptions {
  url: string;
  prefix: string;
  concurrency: number;
  /** Approvers file contents; needed only where tasks ask for approval. */
  approversFileText?: string;
  logger?: Logger;
  /** Start taking jobs now. @defaultValue true */
  start?: boolean;
  /**
   * Base URL of a Messages API (the testkit's fake): the worker then talks to it through the
   * real Anthropic SDK (`AGENTRY_LLM=anthropic`). @defaultValue the scripted model
   */
  anthropicBaseUrl?: string;
  /** How often the worker reconciles approvals and reaps budget leases. @defaultValue the worker's (5 s) */
  reconcileEveryMs?: number;
}

/**
 * The reference worker (`buildWorker`, as `pnpm worker` wires it) with every hook on: budget
 * ledger, governance with the default policy and the audit log, session store and turns,
 * tracing (spans recorded by the in-process SDK when `startTelemetry` ran) and metrics. The
 * model is the one the worker builds from its environment: `AGENTRY_LLM=scripted` (zero
 * latency, the demo rules, the latest 1,000 requests kept), or the Anthropic adapter when
 * `anthropicBaseUrl` is given.
 */
export async function startFullWorker(
  options: FullWorkerOptions,
): Promise<{ built: BuiltWorker; completions: Completions }> {
  let approversFile: string | undefined;
  if (options.approversFileText) {
    approversFile = join(mkdtempSync(join(tmpdir(), "agentry-bench-")), "approvers");
    writeFileSync(approversFile, options.approversFileText);
  }
  const config = parseWorkerConfig({
    REDIS_URL: options.url,
    AGENTRY_PREFIX: options.prefix,
    ...(options.anthropicBaseUrl
      ? {
          AGENTRY_LLM: "anthropic",
          ANTHROPIC_API_KEY: "bench-key",
          ANTHROPIC_BASE_URL: options.anthropicBaseUrl,
        }
      : { AGENTRY_LLM: "scripted" }),
    AGENTRY_CONCURRENCY: String(options.concurrency),
    AGENTRY_WORKER_PORT: "0",
    ...(approversFile ? { AGENTRY_APPROVERS_FILE: approversFile } : {}),
  });
  const built = await buildWorker(config, {
    logger: options.logger ?? discardingLogger("bench-worker"),
    ...(options.reconcileEveryMs === undefined ? {} : { reconcileEveryMs: options.reconcileEveryMs }),
    telemetry: createBullMQTelemetry(),
  });
  const completions = new Completions(built);
  if (options.start ?? true) await built.start();
  return { built, completions };
}

/** Test approvers (one, `alice`) for runs that park tasks awaiting approval. */
export function benchApprovers() {
  return createTestApprovers(["alice"]);
}

/** A producer client as apps/producer wires it: session order registered at submit, producer spans. */
export async function benchClient(
  url: string,
  prefix: string,
): Promise<{ client: AgentryClient; redis: RedisClient }> {
  const redis = createRedis({ url });
  const client = new AgentryClient({
    url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis, prefix }),
    telemetry: createBullMQTelemetry(),
  });
  // Ready before the first burst of submits (each would otherwise wait on its own listener).
  await client.queue.waitUntilReady();
  return { client, redis };
}

/** Submits `n` tasks, `inFlight` submits at a time; each task has its own session. */
export async function submitTasks(
  client: AgentryClient,
  n: number,
  prompt: (i: number) => string,
  options: { offset?: number; inFlight?: number; tenant?: string } = {},
): Promise<string[]> {
  const offset = options.offset ?? 0;
  const inFlight = options.inFlight ?? 100;
  const ids: string[] = [];
  for (let i = 0; i < n; i += inFlight) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(inFlight, n - i) }, (_, j) =>
        client.submit(
          {
            prompt: prompt(offset + i + j),
            sessionId: `s-${offset + i + j}`,
            userId: `u-${(offset + i + j) % 50}`,
          },
          { tenant: options.tenant ?? "acme" },
        ),
      ),
    );
    ids.push(...batch.map((b) => b.taskId));
  }
  return ids;
}

/** A weather prompt: one `get_weather` call, then a text answer (two model calls). */
export function weatherPrompt(i: number): string {
  const cities = ["Paris", "Tokyo", "London", "Berlin", "Lima", "Oslo", "Cairo", "Quito"];
  return `What is the weather in ${cities[i % cities.length] as string}?`;
}

/** Deletes every key under `prefix` (SCAN + UNLINK), so a shared REDIS_URL is left clean. */
export async function dropPrefix(redis: RedisClient, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== "0");
}

/** `used_memory` of the Redis server, in bytes. */
export async function redisUsedMemory(redis: RedisClient): Promise<number> {
  const info = await redis.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

/** Parses `--name value` flags with defaults; `--quick` is a boolean. */
export function flags<T extends Record<string, string>>(defaults: T): T & { quick: boolean } {
  const argv = process.argv.slice(2);
  const out: Record<string, string> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--quick") continue;
    if (a.startsWith("--") && a.slice(2) in defaults && argv[i + 1] !== undefined) {
      out[a.slice(2)] = argv[i + 1] as string;
      i++;
    } else
      throw new Error(
        `unknown argument ${a}; known: ${Object.keys(defaults)
          .map((k) => `--${k}`)
          .join(" ")} --quick`,
      );
  }
  return { ...(out as T), quick: argv.includes("--quick") };
}
