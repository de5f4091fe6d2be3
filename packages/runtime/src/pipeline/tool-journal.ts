import type { Redis } from "ioredis";
import { keySpace, sleep, tenantOwnedId, type KeySpace } from "@agentry/core";
import type { RunContext, ToolJournal, ToolJournalBegin } from "@agentry/agent";
import type { ToolResultBlock, ToolUseBlock } from "@agentry/llm";

const STARTED = "started";

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
 * Results are recorded unfenced: a tool that ran did run, whichever attempt owns the task now.
 */
export class RedisToolJournal implements ToolJournal {
  private readonly redis: Redis;
  private readonly keys: KeySpace;
  private readonly ttlSeconds: number;
  private readonly claimMs: number;
  private readonly pollMs: number;

  constructor(options: RedisToolJournalOptions) {
    this.redis = options.redis;
    this.keys = keySpace(options.prefix);
    this.ttlSeconds = Math.ceil((options.ttlMs ?? 7 * 24 * 3600_000) / 1000);
    this.claimMs = options.claimMs ?? 35_000;
    this.pollMs = options.pollMs ?? 200;
  }

  async begin(run: RunContext, call: ToolUseBlock): Promise<ToolJournalBegin> {
    const key = this.key(run, call);
    const claimKey = this.key(run, call, "claim");
    const claimed = await this.redis.set(key, STARTED, "EX", this.ttlSeconds, "NX");
    if (claimed === "OK") {
      // While this key lives, the claimant may still be running the tool and record its result.
      await this.redis.set(claimKey, "1", "PX", this.claimMs);
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

  async complete(run: RunContext, call: ToolUseBlock, result: ToolResultBlock): Promise<void> {
    await this.redis
      .multi()
      .set(this.key(run, call), JSON.stringify(result), "EX", this.ttlSeconds)
      .del(this.key(run, call, "claim"))
      .exec();
  }

  async abandon(run: RunContext, call: ToolUseBlock): Promise<void> {
    await this.redis.del(this.key(run, call, "claim"));
  }

  /** `<prefix>:tool-journal:tenant:<t>:task:<id>:<toolUseId>`, and its `:claim` marker. */
  private key(run: RunContext, call: ToolUseBlock, marker?: "claim"): string {
    return this.keys.key(
      "tool-journal",
      tenantOwnedId(run.tenant, "task", run.taskId),
      call.id,
      ...(marker === undefined ? [] : [marker]),
    );
  }
}
