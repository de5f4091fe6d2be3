import { Redis, type RedisOptions } from "ioredis";

/**
 * What a connection is for. Each role gets the settings BullMQ and Agentry need:
 * - `worker`: blocking commands, retries forever (`maxRetriesPerRequest: null`).
 * - `producer`: fails fast when Redis is down (no offline queue), so `submit` never hangs.
 * - `subscriber`: pub/sub, reconnects forever.
 * - `command`: short commands from a long-lived process; queued while reconnecting, bounded retries.
 */
export type RedisRole = "worker" | "producer" | "subscriber" | "command";

/** Options for {@link createRedis}. */
export interface CreateRedisOptions {
  /** @defaultValue `redis://127.0.0.1:6379` */
  url?: string;
  /** @defaultValue `command` */
  role?: RedisRole;
  /** Connection name shown by `CLIENT LIST`. */
  connectionName?: string;
  /** Extra ioredis options. Never `keyPrefix`: Agentry and BullMQ prefix keys themselves. */
  extra?: Omit<RedisOptions, "keyPrefix">;
}

/** The default Redis URL when none is configured. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/** Builds the ioredis options for a role (exported so BullMQ connections can share them). */
export function redisOptionsFor(role: RedisRole): RedisOptions {
  const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000);
  switch (role) {
    case "worker":
    case "subscriber":
      return { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy };
    case "producer":
      return { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000, commandTimeout: 5_000, retryStrategy };
    case "command":
      return { maxRetriesPerRequest: 3, connectTimeout: 5_000, retryStrategy };
  }
}

/** Creates an ioredis client with the settings for its role. */
export function createRedis(options: CreateRedisOptions = {}): Redis {
  const role = options.role ?? "command";
  const { keyPrefix: _ignored, ...extra } = (options.extra ?? {}) as RedisOptions;
  return new Redis(options.url ?? DEFAULT_REDIS_URL, {
    ...redisOptionsFor(role),
    lazyConnect: false,
    ...(options.connectionName ? { connectionName: options.connectionName } : {}),
    ...extra,
  });
}

/** Waits until a client is ready (or fails after `timeoutMs`). */
export async function waitForReady(client: Redis, timeoutMs = 5_000): Promise<void> {
  if (client.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${timeoutMs} ms (status ${client.status})`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off("ready", onReady);
    };
    client.on("ready", onReady);
  });
}
