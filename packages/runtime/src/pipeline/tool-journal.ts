import type { Redis } from "ioredis";
import {
  AgentryError,
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

  constructor(options: RedisToolJournalOptions) {
    this.redis = options.redis;
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
      this.redis,
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
    if (claimed === 1) return { status: "fresh" };
    for (;;) {
      const [value, claimAlive] = await Promise.all([this.redis.get(key), this.redis.exists(claimKey)]);
      if (value === null) return this.begin(run, call);
      if (value !== STARTED) return { status: "done", result: JSON.parse(value) as ToolResultBlock };
      if (claimAlive === 0) return { status: "interrupted" };
      await sleep(this.pollMs);
    }
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
