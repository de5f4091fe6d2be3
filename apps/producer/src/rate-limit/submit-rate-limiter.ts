import { AgentryError, defineScripts, keySpace, waitForReady, type createRedis } from "@agentry/core";

type RedisConnection = ReturnType<typeof createRedis>;

const scripts = defineScripts<{
  takeSubmitTokens: (
    keys: [bucket: string],
    args: [perSecond: number, burst: number, tasks: number],
  ) => [taken: number, waitMs: number, left: number];
}>(import.meta.url, { takeSubmitTokens: "./take-submit-tokens-1.lua" });
// As long as AgentryClient waits for its own connection before answering REDIS_UNAVAILABLE.
const READY_GRACE_MS = 2_000;

/** Default sustained submit rate per tenant, in tasks per second. */
export const DEFAULT_SUBMIT_RATE = 10;
/** Default burst per tenant: as large as the largest group, so a full group can be submitted. */
export const DEFAULT_SUBMIT_BURST = 100;

/** Options for {@link SubmitRateLimiter}. */
export interface SubmitRateLimiterOptions {
  /** Connection the buckets live on: the Redis every producer replica shares. */
  redis: RedisConnection;
  /** Key prefix shared with the workers. @defaultValue `agentry` */
  prefix?: string;
  /** Sustained rate per tenant, tasks per second (may be fractional, > 0). @defaultValue {@link DEFAULT_SUBMIT_RATE} */
  perSecond?: number;
  /** Tasks a tenant may submit at once after being idle (integer >= 1). @defaultValue {@link DEFAULT_SUBMIT_BURST} */
  burst?: number;
}

/**
 * Per-tenant submit rate limit, a token bucket per tenant kept in Redis and taken from in one Lua
 * script, so several producer replicas enforce one limit. Every task counts: a group of n tasks
 * takes n tokens, and a resubmission that an idempotency key deduplicates still takes its token
 * (the check comes before the lookup).
 */
export class SubmitRateLimiter {
  readonly perSecond: number;
  readonly burst: number;
  private readonly redis: RedisConnection;
  private readonly keys: ReturnType<typeof keySpace>;

  constructor(options: SubmitRateLimiterOptions) {
    this.perSecond = options.perSecond ?? DEFAULT_SUBMIT_RATE;
    this.burst = options.burst ?? DEFAULT_SUBMIT_BURST;
    if (!(this.perSecond > 0) || !Number.isFinite(this.perSecond)) {
      throw new AgentryError(
        "INVALID_CONFIG",
        `submit rate must be a finite number > 0 (got ${this.perSecond})`,
      );
    }
    if (!Number.isInteger(this.burst) || this.burst < 1)
      throw new AgentryError("INVALID_CONFIG", `submit burst must be an integer >= 1 (got ${this.burst})`);
    this.redis = options.redis;
    this.keys = keySpace(options.prefix);
  }

  /**
   * Takes `tasks` tokens from the tenant's bucket. Throws `RATE_LIMITED` with `retryAfterMs` (the
   * wait until enough tokens have refilled) when there are too few, `INVALID_INPUT` when `tasks`
   * is more than the burst (such a request could never pass), and `REDIS_UNAVAILABLE` when the
   * bucket cannot be read: no submission passes unchecked.
   */
  async take(tenant: string, tasks: number): Promise<void> {
    if (tasks > this.burst) {
      throw new AgentryError(
        "INVALID_INPUT",
        `${tasks} tasks at once are more than this service's submit burst of ${this.burst} per tenant`,
        {
          details: {
            fields: [
              { path: "tasks", message: `at most ${this.burst} tasks in one request (the submit burst)` },
            ],
          },
        },
      );
    }
    let reply: [number, number, number];
    try {
      // A fail-fast connection refuses commands while it (re)connects; give it the client's grace.
      await waitForReady(this.redis, READY_GRACE_MS);
      reply = await scripts.takeSubmitTokens(
        this.redis,
        [this.bucketKey(tenant)],
        [this.perSecond, this.burst, tasks],
      );
    } catch (err) {
      throw new AgentryError("REDIS_UNAVAILABLE", `Redis is unavailable: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const [taken, waitMs] = reply;
    if (taken === 1) return;
    throw new AgentryError(
      "RATE_LIMITED",
      `Too many submissions for this tenant: at most ${this.perSecond} tasks per second, bursts of ${this.burst}`,
      {
        retryAfterMs: Math.max(1, waitMs),
      },
    );
  }

  /** The tenant's bucket. Tenant ids never contain `{` or `}`, so a hash-tagged prefix keeps one slot. */
  private bucketKey(tenant: string): string {
    return this.keys.key("ratelimit", "submit", tenant);
  }
}
