import type { Redis } from "ioredis";
import type { RunContext, ToolJournal, ToolJournalBegin } from "@agentry/agent";
import type { ToolResultBlock, ToolUseBlock } from "@agentry/llm";

const STARTED = "started";

/**
 * The tool journal in Redis, shared by every worker: a call is claimed (`SET NX`) before its
 * handler runs and its result recorded after. A retry that finds a claim without a result knows
 * a previous attempt died mid-call, so a non-idempotent tool is not run a second time.
 */
export class RedisToolJournal implements ToolJournal {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly ttlSeconds: number;

  /** @param options.ttlMs how long entries are kept. @defaultValue 7 days */
  constructor(options: { redis: Redis; prefix: string; ttlMs?: number }) {
    this.redis = options.redis;
    this.prefix = options.prefix;
    this.ttlSeconds = Math.ceil((options.ttlMs ?? 7 * 24 * 3600_000) / 1000);
  }

  async begin(run: RunContext, call: ToolUseBlock): Promise<ToolJournalBegin> {
    const key = this.key(run, call);
    const claimed = await this.redis.set(key, STARTED, "EX", this.ttlSeconds, "NX");
    if (claimed === "OK") return { status: "fresh" };
    const value = await this.redis.get(key);
    if (value === null) return this.begin(run, call);
    if (value === STARTED) return { status: "interrupted" };
    return { status: "done", result: JSON.parse(value) as ToolResultBlock };
  }

  async complete(run: RunContext, call: ToolUseBlock, result: ToolResultBlock): Promise<void> {
    await this.redis.set(this.key(run, call), JSON.stringify(result), "EX", this.ttlSeconds);
  }

  private key(run: RunContext, call: ToolUseBlock): string {
    return `${this.prefix}:tool-journal:${run.taskId}:${call.id}`;
  }
}
