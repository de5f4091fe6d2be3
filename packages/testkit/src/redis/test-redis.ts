import { randomBytes } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import { afterAll, inject } from "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/** A test's own slice of the shared test Redis: a unique key prefix and tracked clients. */
export interface TestRedis {
  /** URL of the test Redis. */
  readonly url: string;
  /** A unique key prefix for this test file; no other test uses it. */
  readonly prefix: string;
  /** A fresh unique prefix (for tests that want isolation from the rest of the file). */
  freshPrefix(label?: string): string;
  /** A new client, closed by cleanup. */
  client(options?: RedisOptions): Redis;
  /** Deletes every key under the prefixes this context handed out and closes its clients. */
  cleanup(): Promise<void>;
}

/** The URL provided by the global setup (or `REDIS_URL` when used outside vitest's globalSetup). */
export function testRedisUrl(): string {
  try {
    return inject("redisUrl");
  } catch {
    const url = process.env.REDIS_URL;
    if (!url) throw new Error("No test Redis: run under the testkit globalSetup or set REDIS_URL");
    return url;
  }
}

/** Creates a test Redis context. Call `cleanup()` yourself, or use {@link useTestRedis}. */
export function createTestRedis(label = "t"): TestRedis {
  const url = testRedisUrl();
  const prefixes: string[] = [];
  const clients: Redis[] = [];
  const fresh = (l = label) => {
    const p = `test-${l}-${randomBytes(5).toString("hex")}`;
    prefixes.push(p);
    return p;
  };
  const prefix = fresh();
  return {
    url,
    prefix,
    freshPrefix: fresh,
    client(options?: RedisOptions) {
      const c = new Redis(url, { maxRetriesPerRequest: null, ...options });
      clients.push(c);
      return c;
    },
    async cleanup() {
      const admin = new Redis(url, { maxRetriesPerRequest: 3 });
      try {
        for (const p of prefixes) {
          // Hash-tagged prefixes ({x}) and plain ones both start with the prefix text.
          for (const pattern of [`${p}*`, `{${p}}*`, `bull:${p}*`]) {
            let cursor = "0";
            do {
              const [next, keys] = await admin.scan(cursor, "MATCH", pattern, "COUNT", 500);
              cursor = next;
              if (keys.length > 0) await admin.unlink(...keys);
            } while (cursor !== "0");
          }
        }
      } finally {
        admin.disconnect();
        await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
      }
    },
  };
}

/** A test Redis context for the current file, cleaned up in `afterAll`. */
export function useTestRedis(label?: string): TestRedis {
  const ctx = createTestRedis(label);
  afterAll(() => ctx.cleanup());
  return ctx;
}
