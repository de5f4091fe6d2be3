import { AgentryError, defineScripts, fenceArgs, keySpace, type KeySpace } from "@agentry/core";
import type { Message } from "@agentry/llm";
import type { Redis } from "ioredis";
import { keyPart, requireId } from "../internal/validate.js";
import { compileSessionStoreOptions, encodeMessages, trimHistory } from "./history.js";
import type {
  AppendOptions,
  CompiledSessionStoreOptions,
  SessionStore,
  SessionStoreOptions,
} from "./session-store.js";

const scripts = defineScripts<{
  appendMessages: (
    keys: [history: string, fence: string, once: string],
    args: [fenceToken: string, isOnce: "1" | "", maxMessages: number, ttlMs: number, ...messages: string[]],
  ) => number;
}>(import.meta.url, { appendMessages: "./append-messages-3.lua" });

/** Options for {@link RedisSessionStore}. */
export interface RedisSessionStoreOptions extends SessionStoreOptions {
  redis: Redis;
  /** Key prefix, e.g. `agentry` or `{agentry}` for Redis Cluster. */
  prefix: string;
}

/**
 * Session history in Redis: one list of JSON messages per session, trimmed to `maxMessages`
 * on append (LTRIM), bounded again by tokens on load, with a TTL every use refreshes.
 */
export class RedisSessionStore implements SessionStore {
  private readonly redis: Redis;
  private readonly keys: KeySpace;
  private readonly options: CompiledSessionStoreOptions;

  constructor(options: RedisSessionStoreOptions) {
    this.redis = options.redis;
    this.keys = keySpace(options.prefix);
    this.options = compileSessionStoreOptions(options);
  }

  private key(sessionId: string): string {
    return this.keys.key("session", keyPart(sessionId), "messages");
  }

  /** `<prefix>:session:<session>:once:<once>`: an append with `once` leaves it for the session's TTL. */
  onceKey(sessionId: string, once: string): string {
    return this.keys.key("session", keyPart(sessionId), "once", keyPart(once));
  }

  async append(sessionId: string, messages: Message[], options: AppendOptions = {}): Promise<boolean> {
    const encoded = encodeMessages(sessionId, messages, this.options.maxMessageBytes);
    const key = this.key(sessionId);
    const fence = fenceArgs(options.fence, key);
    const onceKey = options.once === undefined ? key : this.onceKey(sessionId, options.once);
    // Keeping the last maxMessages loses nothing load could return.
    const reply = await scripts.appendMessages(
      this.redis,
      [key, fence.key, onceKey],
      [
        fence.token,
        options.once === undefined ? "" : "1",
        this.options.maxMessages,
        this.options.ttlMs,
        ...encoded,
      ],
    );
    if (reply === -1) {
      throw new AgentryError(
        "LOCK_LOST",
        `Session ${sessionId}: the writer no longer holds its fence; nothing was appended`,
        { retryable: false },
      );
    }
    return reply === 1;
  }

  async load(sessionId: string): Promise<Message[]> {
    const key = this.key(requireId(sessionId, "sessionId"));
    const [raw] = (await execOrThrow(
      this.redis.multi().lrange(key, -this.options.maxMessages, -1).pexpire(key, this.options.ttlMs),
    )) as [string[], number];
    const messages = raw.map((json, index) => {
      try {
        return JSON.parse(json) as Message;
      } catch (err) {
        throw new AgentryError("INTERNAL", `Session ${sessionId}: stored message ${index} is not JSON`, {
          cause: err,
        });
      }
    });
    return trimHistory(messages, this.options);
  }

  async exists(sessionId: string): Promise<boolean> {
    return (await this.redis.exists(this.key(requireId(sessionId, "sessionId")))) === 1;
  }

  async clear(sessionId: string): Promise<void> {
    await this.redis.del(this.key(requireId(sessionId, "sessionId")));
  }
}

/** Runs a MULTI and returns the replies, throwing the first command error. */
async function execOrThrow(tx: ReturnType<Redis["multi"]>): Promise<unknown[]> {
  const results = await tx.exec();
  if (results === null) throw new AgentryError("INTERNAL", "Redis transaction was aborted");
  return results.map(([err, value]) => {
    if (err) throw AgentryError.from(err, "REDIS_UNAVAILABLE");
    return value;
  });
}
