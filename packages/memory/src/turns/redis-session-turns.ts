import {
  defineScripts,
  fenceArgs,
  keySpace,
  newToken,
  positiveInt,
  type Fence,
  type KeySpace,
} from "@agentry/core";
import type { Redis } from "ioredis";
import { keyPart, requireId } from "../internal/validate.js";
import type { SessionLease, SessionTurns } from "./session-turns.js";

/** Options for {@link RedisSessionTurns}. */
export interface RedisSessionTurnsOptions {
  redis: Redis;
  /** Key prefix, e.g. `agentry` or `{agentry}` for Redis Cluster. */
  prefix: string;
}

const scripts = defineScripts<{
  enqueueTurn: (keys: [order: string, seq: string], args: [taskId: string]) => number;
  acquireTurn: (
    keys: [order: string, lease: string],
    args: [taskId: string, token: string, ttlMs: number],
  ) => [number, unknown, unknown?];
  renewTurn: (keys: [lease: string], args: [token: string, ttlMs: number]) => number;
  releaseTurn: (
    keys: [order: string, lease: string, seq: string, fence: string],
    args: [taskId: string, token: string, fenceToken: string],
  ) => number;
  removeTurn: (
    keys: [order: string, seq: string, lease: string],
    args: [taskId: string, endTurn: "1" | "0"],
  ) => number;
}>(import.meta.url, {
  enqueueTurn: "./enqueue-turn-2.lua",
  acquireTurn: "./acquire-turn-2.lua",
  renewTurn: "./renew-turn-1.lua",
  releaseTurn: "./release-turn-4.lua",
  removeTurn: "./remove-turn-3.lua",
});

/**
 * Session turns in Redis. Per session: a sorted set of task ids scored by submit sequence
 * (the order), a counter, and a lease hash that expires on its own when its holder dies.
 * Every transition is one Lua script, so racing workers see one order.
 */
export class RedisSessionTurns implements SessionTurns {
  private readonly redis: Redis;
  private readonly keys: KeySpace;

  constructor(options: RedisSessionTurnsOptions) {
    this.redis = options.redis;
    this.keys = keySpace(options.prefix);
  }

  private sessionKeys(sessionId: string) {
    const base = keyPart(requireId(sessionId, "sessionId"));
    return {
      order: this.keys.key("turns", base, "order"),
      seq: this.keys.key("turns", base, "seq"),
      lease: this.keys.key("turns", base, "lease"),
    };
  }

  async enqueue(sessionId: string, taskId: string): Promise<void> {
    const k = this.sessionKeys(sessionId);
    await scripts.enqueueTurn(this.redis, [k.order, k.seq], [requireId(taskId, "taskId")]);
  }

  async tryAcquire(sessionId: string, taskId: string, ttlMs: number): Promise<SessionLease | null> {
    const k = this.sessionKeys(sessionId);
    requireId(taskId, "taskId");
    positiveInt(ttlMs, "ttlMs");
    const token = newToken();
    const reply = await scripts.acquireTurn(this.redis, [k.order, k.lease], [taskId, token, ttlMs]);
    if (reply[0] !== 1) return null;
    return { sessionId, taskId, token, expiresAt: Number(reply[1]) };
  }

  /** Extends a held lease and updates `lease.expiresAt`; false if lost. */
  async renew(lease: SessionLease, ttlMs: number): Promise<boolean> {
    positiveInt(ttlMs, "ttlMs");
    const k = this.sessionKeys(lease.sessionId);
    const expiresAt = Number(await scripts.renewTurn(this.redis, [k.lease], [lease.token, ttlMs]));
    if (expiresAt === 0) return false;
    lease.expiresAt = expiresAt;
    return true;
  }

  async release(lease: SessionLease, options: { fence?: Fence } = {}): Promise<boolean> {
    const k = this.sessionKeys(lease.sessionId);
    const fence = fenceArgs(options.fence, k.lease);
    return (
      (await scripts.releaseTurn(
        this.redis,
        [k.order, k.lease, k.seq, fence.key],
        [lease.taskId, lease.token, fence.token],
      )) === 1
    );
  }

  async remove(sessionId: string, taskId: string, options: { endTurn?: boolean } = {}): Promise<void> {
    const k = this.sessionKeys(sessionId);
    await scripts.removeTurn(
      this.redis,
      [k.order, k.seq, k.lease],
      [requireId(taskId, "taskId"), options.endTurn ? "1" : "0"],
    );
  }

  async head(sessionId: string): Promise<string | null> {
    const [head] = await this.redis.zrange(this.sessionKeys(sessionId).order, 0, "0");
    return head ?? null;
  }
}
