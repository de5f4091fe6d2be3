import { readFileSync } from "node:fs";
import { fenceArgs, keySpace, newToken, type Fence, type KeySpace } from "@agentry/core";
import type { Redis } from "ioredis";
import { keyPart, requireId, requirePositiveInt } from "../internal/validate.js";
import type { SessionLease, SessionTurns } from "./session-turns.js";

/** Options for {@link RedisSessionTurns}. */
export interface RedisSessionTurnsOptions {
  redis: Redis;
  /** Key prefix, e.g. `agentry` or `{agentry}` for Redis Cluster. */
  prefix: string;
}

const script = (name: string) => readFileSync(new URL(`./${name}.lua`, import.meta.url), "utf8");

const COMMANDS = {
  agentryMemoryEnqueueTurn: { numberOfKeys: 2, lua: script("enqueue-turn") },
  agentryMemoryAcquireTurn: { numberOfKeys: 2, lua: script("acquire-turn") },
  agentryMemoryRenewTurn: { numberOfKeys: 1, lua: script("renew-turn") },
  agentryMemoryReleaseTurn: { numberOfKeys: 4, lua: script("release-turn") },
  agentryMemoryRemoveTurn: { numberOfKeys: 3, lua: script("remove-turn") },
} as const;

type Arg = string | number;
type TurnCommands = {
  [K in keyof typeof COMMANDS]: (...args: Arg[]) => Promise<unknown>;
};

/**
 * Session turns in Redis. Per session: a sorted set of task ids scored by submit sequence
 * (the order), a counter, and a lease hash that expires on its own when its holder dies.
 * Every transition is one Lua script, so racing workers see one order.
 */
export class RedisSessionTurns implements SessionTurns {
  private readonly commands: TurnCommands;
  private readonly redis: Redis;
  private readonly keys: KeySpace;

  constructor(options: RedisSessionTurnsOptions) {
    this.redis = options.redis;
    this.keys = keySpace(options.prefix);
    for (const [name, definition] of Object.entries(COMMANDS)) {
      if (!(name in this.redis)) this.redis.defineCommand(name, definition);
    }
    this.commands = this.redis as unknown as TurnCommands;
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
    await this.commands.agentryMemoryEnqueueTurn(k.order, k.seq, requireId(taskId, "taskId"));
  }

  async tryAcquire(sessionId: string, taskId: string, ttlMs: number): Promise<SessionLease | null> {
    const k = this.sessionKeys(sessionId);
    requireId(taskId, "taskId");
    requirePositiveInt(ttlMs, "ttlMs");
    const token = newToken();
    const reply = (await this.commands.agentryMemoryAcquireTurn(k.order, k.lease, taskId, token, ttlMs)) as [
      number,
      unknown,
      unknown?,
    ];
    if (reply[0] !== 1) return null;
    return { sessionId, taskId, token, expiresAt: Number(reply[1]) };
  }

  /** Extends a held lease and updates `lease.expiresAt`; false if lost. */
  async renew(lease: SessionLease, ttlMs: number): Promise<boolean> {
    requirePositiveInt(ttlMs, "ttlMs");
    const k = this.sessionKeys(lease.sessionId);
    const expiresAt = Number(await this.commands.agentryMemoryRenewTurn(k.lease, lease.token, ttlMs));
    if (expiresAt === 0) return false;
    lease.expiresAt = expiresAt;
    return true;
  }

  async release(lease: SessionLease, options: { fence?: Fence } = {}): Promise<boolean> {
    const k = this.sessionKeys(lease.sessionId);
    const fence = fenceArgs(options.fence, k.lease);
    return (await this.commands.agentryMemoryReleaseTurn(k.order, k.lease, k.seq, fence.key, lease.taskId, lease.token, fence.token)) === 1;
  }

  async remove(sessionId: string, taskId: string, options: { endTurn?: boolean } = {}): Promise<void> {
    const k = this.sessionKeys(sessionId);
    await this.commands.agentryMemoryRemoveTurn(k.order, k.seq, k.lease, requireId(taskId, "taskId"), options.endTurn ? "1" : "0");
  }

  async head(sessionId: string): Promise<string | null> {
    const [head] = await this.redis.zrange(this.sessionKeys(sessionId).order, 0, 0);
    return head ?? null;
  }
}
