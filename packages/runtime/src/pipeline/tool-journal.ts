import type { Redis } from "ioredis";
import {
  AgentryError,
  awaitReplicas,
  defineScripts,
  fenceArgs,
  keySpace,
  sleep,
  tenantOwnedId,
  type KeySpace,
} from "@agentry/core";
import type { RunContext, ToolJournal, ToolJournalBegin } from "@agentry/agent";
import type { ToolResultBlock, ToolUseBlock } from "@agentry/llm";

const STARTED = "started";

const scripts = defineScripts<{
  claimToolCall: (
    keys: [entry: string, claim: string, fence: string],
    args: [fenceToken: string, ttlMs: number, claimMs: number],
  ) => number;
}>(import.meta.url, { claimToolCall: "./claim-tool-call-3.lua" });

/** Options for {@link RedisToolJournal}. */
export interface RedisToolJournalOptions {
  redis: Redis;
  prefix: string;
  /** How long entries are kept. @defaultValue 7 days */
  ttlMs?: number;
  /**
   * How long a claimed call may still record its result: its tool's timeout plus a margin. A
   * later attempt that finds the call claimed but unfinished waits this long (from the claim)
   * for the result before it reports the call as interrupted: an attempt that lost its job lock
   * while its tool ran still records what the tool did. @defaultValue 35_000
   */
  claimMs?: number;
  /** How often a waiting attempt looks for the result. @defaultValue 200 */
  pollMs?: number;
  /**
   * Replicas that must hold a claim before its tool runs: after the claim, Redis `WAIT` on the
   * connection to the claim's master (on a Cluster, its slot's master). Replication is
   * asynchronous, so without it a master that dies right after a claim can lose the claim to the
   * replica that replaces it, and a later attempt runs the tool again. A claim fewer replicas
   * acknowledge in time is withdrawn and the attempt stops as retryable `REDIS_UNAVAILABLE`,
   * before the tool runs. @defaultValue 0 (off)
   */
  waitReplicas?: number;
  /** How long a claim waits for its replicas. @defaultValue 1_000 */
  waitTimeoutMs?: number;
  /**
   * The connection claims and their `WAIT` go on. A `WAIT` holds its connection until the
   * replicas answer, so a deployment that waits gives claims a connection of their own.
   * @defaultValue `redis`
   */
  claimRedis?: Redis;
}

/**
 * The tool journal in Redis, shared by every worker: a call is claimed (`SET NX`) before its
 * handler runs and its result recorded after. A retry that finds a claim without a result knows
 * a previous attempt was cut off mid-call, so a non-idempotent tool is not run a second time.
 * The claim is fenced by the run's job lock (`RunContext.fence`): an attempt that lost its lock
 * gets `LOCK_LOST` and runs nothing, so no stale attempt starts a tool once another attempt owns
 * the task or the task has completed. Results are recorded unfenced (a tool that ran did run,
 * whichever attempt owns the task now), but only over the claim: never after the entry is gone.
 */
export class RedisToolJournal implements ToolJournal {
  private readonly redis: Redis;
  private readonly keys: KeySpace;
  private readonly ttlMs: number;
  private readonly claimMs: number;
  private readonly pollMs: number;
  private readonly claimRedis: Redis;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;

  constructor(options: RedisToolJournalOptions) {
    this.redis = options.redis;
    this.claimRedis = options.claimRedis ?? options.redis;
    this.waitReplicas = options.waitReplicas ?? 0;
    this.waitTimeoutMs = options.waitTimeoutMs ?? 1_000;
    this.keys = keySpace(options.prefix);
    this.ttlMs = options.ttlMs ?? 7 * 24 * 3600_000;
    this.claimMs = options.claimMs ?? 35_000;
    this.pollMs = options.pollMs ?? 200;
  }

  async begin(run: RunContext, call: ToolUseBlock): Promise<ToolJournalBegin> {
    const key = this.key(run, call);
    const claimKey = this.key(run, call, "claim");
    const fence = fenceArgs(run.fence, key);
    const claimed = await scripts.claimToolCall(
      this.claimRedis,
      [key, claimKey, fence.key],
      [fence.token, this.ttlMs, this.claimMs],
    );
    if (claimed === -1) {
      throw new AgentryError(
        "LOCK_LOST",
        `Task ${run.taskId}: the attempt no longer holds its job lock; tool call ${call.id} was not started`,
        { retryable: false },
      );
    }
    if (claimed === 1) {
      if (this.waitReplicas > 0) await this.replicate(run, call, key, claimKey);
      return { status: "fresh" };
    }
    for (;;) {
      const [value, claimAlive] = await Promise.all([this.redis.get(key), this.redis.exists(claimKey)]);
      if (value === null) return this.begin(run, call);
      if (value !== STARTED) return { status: "done", result: JSON.parse(value) as ToolResultBlock };
      if (claimAlive === 0) return { status: "interrupted" };
      await sleep(this.pollMs);
    }
  }

  /**
   * Waits until `waitReplicas` replicas hold the claim just made on `claimRedis` (on its
   * connection, see awaitReplicas). A shortfall, or a master without the claim (the slot moved
   * to a replica that never had it), withdraws the claim (no tool ran under it) and throws.
   */
  private async replicate(run: RunContext, call: ToolUseBlock, key: string, claimKey: string): Promise<void> {
    const { held, acked } = await awaitReplicas(this.claimRedis, {
      key,
      replicas: this.waitReplicas,
      timeoutMs: this.waitTimeoutMs,
    });
    if (held && acked >= this.waitReplicas) return;
    await this.claimRedis.del(key, claimKey).catch(() => undefined);
    const why = held
      ? `${acked} of ${this.waitReplicas} replica(s) acknowledged it within ${this.waitTimeoutMs} ms`
      : "its master no longer holds it (the slot moved to a replica that never got it)";
    throw new AgentryError(
      "REDIS_UNAVAILABLE",
      `Task ${run.taskId}: the claim of tool call ${call.id} is not replicated: ${why}; the tool did not run and the attempt is retried (AGENTRY_REDIS_WAIT_REPLICAS asks for ${this.waitReplicas})`,
      { retryable: true },
    );
  }

  async complete(run: RunContext, call: ToolUseBlock, result: ToolResultBlock): Promise<void> {
    await this.redis
      .multi()
      // XX: a result lands only on its claim. Once the entry is gone (the task completed and
      // dropped its journal) a late claimant leaves nothing behind.
      .set(this.key(run, call), JSON.stringify(result), "PX", this.ttlMs, "XX")
      .del(this.key(run, call, "claim"))
      .exec();
  }

  async abandon(run: RunContext, call: ToolUseBlock): Promise<void> {
    await this.redis.del(this.key(run, call, "claim"));
  }

  /**
   * The journal entry of one call of the run's task: what a completed task drops (no attempt
   * can claim a call of it any more, see the class comment).
   */
  entryKey(run: Pick<RunContext, "tenant" | "taskId">, toolUseId: string): string {
    return this.keys.key("tool-journal", tenantOwnedId(run.tenant, "task", run.taskId), toolUseId);
  }

  /** `<prefix>:tool-journal:tenant:<t>:task:<id>:<toolUseId>`, and its `:claim` marker. */
  private key(run: RunContext, call: ToolUseBlock, marker?: "claim"): string {
    const entry = this.entryKey(run, call.id);
    return marker === undefined ? entry : `${entry}:${marker}`;
  }
}
