import { homedir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import {
  AgentryError,
  createRedis,
  pinShardCount,
  shardPrefixes,
  syncClock,
  waitReplicasOf,
  type AgentryEnv,
} from "@agentry/core";
import type { AgentryClient, ShardedBudget } from "@agentry/runtime";
import { ApprovalStore, AuditLog, loadApproversFile, type ApproverKeys } from "@agentry/governance";
import { safeRedisUrl } from "./format.js";
import { CliError, type CliIo } from "./io.js";
import type { CliTracing } from "./tracing.js";

/** How long the CLI waits for Redis before saying it is unreachable. */
const CONNECT_TIMEOUT_MS = 3_000;

/**
 * What one CLI run uses, created on first use and closed at the end: one fail-fast Redis
 * connection shared by the client, the budget ledger, the approval store and the audit log.
 * Commands that need no Redis (`keys generate`, `policy check`) never connect.
 */
export class CliContext {
  readonly env: AgentryEnv;
  readonly io: CliIo;
  #redis: Promise<Redis> | undefined;
  #client: AgentryClient | undefined;
  #approverKeys: ApproverKeys | undefined;
  readonly #tracing: CliTracing | undefined;

  /** `tracing`: the command's tracing, when it is traced and an OTLP endpoint is set. */
  constructor(env: AgentryEnv, io: CliIo, tracing?: CliTracing) {
    this.env = env;
    this.io = io;
    this.#tracing = tracing;
  }

  /** Names a task this command submitted on the command's span (nothing when not traced). */
  recordSubmitted(task: { taskId: string; sessionId: string; tenant: string }): void {
    this.#tracing?.recordTask(task);
  }

  /** The base prefix (`AGENTRY_PREFIX`): global keys, and the only queue's with one shard. */
  get prefix(): string {
    return this.env.AGENTRY_PREFIX;
  }

  /** Every queue shard's prefix (`AGENTRY_SHARDS`), shard 0 first. */
  get shardPrefixes(): string[] {
    return shardPrefixes(this.prefix, this.env.AGENTRY_SHARDS);
  }

  /**
   * The prefixes holding an audit chain: every shard's, and with several shards also the global
   * prefix first (the global slot's own entries, such as budget leases reaped, and what was
   * written before the queue was sharded).
   */
  get auditPrefixes(): string[] {
    const shards = this.shardPrefixes;
    return shards.length === 1 ? shards : [this.prefix, ...shards];
  }

  /** The user's home: `HOME` from the environment given to the CLI, else the OS's. */
  get home(): string {
    return this.io.env.HOME || homedir();
  }

  /** `~/.agentry/keys/<approver>.key`. */
  defaultKeyFile(approver: string): string {
    return join(this.home, ".agentry", "keys", `${approver}.key`);
  }

  /** The one-line failure for an unreachable Redis. */
  unreachable(cause?: unknown): CliError {
    return new CliError(`Redis is unreachable at ${safeRedisUrl(this.env.REDIS_URL)}`, { cause });
  }

  /** The connection, once ready. Rejects within a few seconds when Redis cannot be reached. */
  redis(): Promise<Redis> {
    this.#redis ??= this.#connect();
    return this.#redis;
  }

  async #connect(): Promise<Redis> {
    const redis = createRedis({ url: this.env.REDIS_URL, role: "producer", connectionName: "agentry-cli" });
    let lastError: unknown;
    redis.on("error", (err: unknown) => {
      lastError = err;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => done(new AgentryError("REDIS_UNAVAILABLE", `not ready after ${CONNECT_TIMEOUT_MS} ms`)),
          CONNECT_TIMEOUT_MS,
        );
        const onReady = () => done();
        // A refused connection will not heal within the CLI's patience: report it at once.
        const onError = (err: NodeJS.ErrnoException) => {
          if (err.code === "ECONNREFUSED" || err.code === "ENOTFOUND" || err.code === "EHOSTUNREACH")
            done(err);
        };
        const done = (err?: Error) => {
          clearTimeout(timer);
          redis.off("ready", onReady);
          redis.off("error", onError);
          if (err) reject(err);
          else resolve();
        };
        if (redis.status === "ready") return done();
        redis.on("ready", onReady);
        redis.on("error", onError);
      });
    } catch (err) {
      redis.disconnect();
      throw this.unreachable(lastError ?? err);
    }
    // A CLI on another shard count than the deployment's would look for tasks, approvals and
    // session budgets on the wrong shards: refused with what to set (read only: it records nothing).
    try {
      await pinShardCount(redis, this.prefix, this.env.AGENTRY_SHARDS, { write: false });
    } catch (err) {
      // A Redis user that may not read the record (a custom ACL) runs unchecked.
      if (!(err instanceof Error && err.message.startsWith("NOPERM"))) {
        redis.disconnect();
        throw err;
      }
    }
    // Approvals are decided and expire by Redis's time, as the workers judge them.
    await syncClock(redis).catch((err: unknown) => {
      if (!(err instanceof Error && err.message.startsWith("NOPERM"))) throw err;
    });
    return redis;
  }

  /** The producer client, registering session order like the HTTP API does. */
  async client(): Promise<AgentryClient> {
    if (!this.#client) {
      const redis = await this.redis();
      // Loaded on demand: the runtime (BullMQ, OpenTelemetry) costs seconds of start-up that
      // `keys`, `policy`, `approvals` and `audit` do not need.
      const [{ AgentryClient }, { RedisSessionTurns }] = await Promise.all([
        import("@agentry/runtime"),
        import("@agentry/memory"),
      ]);
      this.#client = new AgentryClient({
        redis,
        prefix: this.prefix,
        shards: this.env.AGENTRY_SHARDS,
        sessionOrder: (prefix) => new RedisSessionTurns({ redis, prefix }),
        // Traced: enqueueing opens a producer span whose context travels in the job to the worker.
        ...(this.#tracing ? { telemetry: this.#tracing.queueTelemetry } : {}),
        fairShare: this.env.AGENTRY_FAIR_SHARE === "on",
        waitReplicas: waitReplicasOf(this.env),
      });
    }
    return this.#client;
  }

  /**
   * The budget of every scope: global, tenant and user scopes on the global prefix, a session's
   * on its session's queue shard (one shard: all on the global prefix).
   */
  async ledger(): Promise<ShardedBudget> {
    const { BudgetLedger, ShardedBudget } = await import("@agentry/runtime");
    const redis = await this.redis();
    const global = new BudgetLedger({ redis, prefix: this.prefix });
    return new ShardedBudget(
      global,
      this.shardPrefixes.map((p) => (p === this.prefix ? global : new BudgetLedger({ redis, prefix: p }))),
    );
  }

  /**
   * Every queue shard's approval store, shard 0 first; each audits every vote, resolution and
   * refused decision in its shard's chain. With `verify: true` they also check signatures
   * against `AGENTRY_APPROVERS_FILE` (when set), so only deciding needs a readable approvers file.
   * With `AGENTRY_REDIS_WAIT_REPLICAS`, a decision returns only once that many replicas hold it.
   */
  async approvals(options: { verify?: boolean } = {}): Promise<ApprovalStore[]> {
    const keys = options.verify ? this.approverKeys() : undefined;
    const redis = await this.redis();
    return Promise.all(
      this.shardPrefixes.map(
        async (prefix) =>
          new ApprovalStore({
            redis,
            prefix,
            audit: await this.audit(prefix),
            ...(keys ? { approverKeys: keys } : {}),
            waitReplicas: waitReplicasOf(this.env),
          }),
      ),
    );
  }

  /** The store (of the shard) holding approval `id`, with the record; undefined when no shard has it. */
  async approvalOf(
    id: string,
    options: { verify?: boolean } = {},
  ): Promise<
    { store: ApprovalStore; record: Awaited<ReturnType<ApprovalStore["get"]>> & object } | undefined
  > {
    for (const store of await this.approvals(options)) {
      const record = await store.get(id);
      if (record) return { store, record };
    }
    return undefined;
  }

  /**
   * An audit chain (the base prefix's lane 0 by default; see {@link auditPrefixes}), authenticated with
   * `AGENTRY_AUDIT_KEY` (and verifying entries of the retired `AGENTRY_AUDIT_PREVIOUS_KEYS`).
   * Without a key the entries the CLI writes (votes, refusals) carry no MAC, and a log whose
   * workers hold the key will report them as unauthenticated.
   */
  async audit(prefix: string = this.prefix, lane = 0): Promise<AuditLog> {
    return new AuditLog({ redis: await this.redis(), prefix, lane, ...this.auditKeys() });
  }

  /**
   * Every audit chain of the deployment, in {@link auditPrefixes} order, and under each prefix
   * every lane (`AGENTRY_AUDIT_LANES`), lane 0 first.
   */
  async audits(): Promise<AuditLog[]> {
    const lanes = Array.from({ length: this.env.AGENTRY_AUDIT_LANES }, (_, lane) => lane);
    return Promise.all(this.auditPrefixes.flatMap((prefix) => lanes.map((lane) => this.audit(prefix, lane))));
  }

  /** The audit key options from the environment, for logs and for checking exports without Redis. */
  auditKeys(): { key?: string; previousKeys: string[] } {
    return {
      ...(this.env.AGENTRY_AUDIT_KEY ? { key: this.env.AGENTRY_AUDIT_KEY } : {}),
      previousKeys: this.env.AGENTRY_AUDIT_PREVIOUS_KEYS,
    };
  }

  /** Enrolled approvers' public keys, or `undefined` when `AGENTRY_APPROVERS_FILE` is not set. */
  approverKeys(): ApproverKeys | undefined {
    const file = this.env.AGENTRY_APPROVERS_FILE;
    if (!file) return undefined;
    this.#approverKeys ??= loadApproversFile(file);
    return this.#approverKeys;
  }

  /** Closes whatever was opened. Never throws. */
  async close(): Promise<void> {
    await this.#client?.close().catch(() => undefined);
    const pending = this.#redis;
    if (!pending) return;
    const redis = await pending.catch(() => undefined);
    if (redis) await redis.quit().catch(() => redis.disconnect());
  }
}

/**
 * True for errors that mean Redis went away mid-command. Not for a write Redis took that too few
 * replicas acknowledged (`details.replicas`): its own message says what stands and what to do.
 */
export function isRedisDown(err: unknown): boolean {
  if (AgentryError.isInstance(err))
    return err.code === "REDIS_UNAVAILABLE" && err.details?.["replicas"] === undefined;
  const e = err as { name?: string; code?: string } | null;
  return (
    e?.name === "MaxRetriesPerRequestError" ||
    e?.code === "ECONNREFUSED" ||
    e?.code === "ECONNRESET" ||
    e?.code === "ETIMEDOUT" ||
    e?.code === "EPIPE"
  );
}
