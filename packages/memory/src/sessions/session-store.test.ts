import { isAgentryError } from "@agentry/core";
import type { Message } from "@agentry/llm";
import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { sessionStoreConformance } from "../testing.js";
import { InMemorySessionStore } from "./in-memory-session-store.js";
import { RedisSessionStore } from "./redis-session-store.js";

const redis = useTestRedis("sessions");

sessionStoreConformance(
  "redis",
  (options) =>
    new RedisSessionStore({ redis: redis.client(), prefix: redis.freshPrefix("sessions"), ...options }),
);
sessionStoreConformance("in-memory", (options) => new InMemorySessionStore(options));

const hello: Message = { role: "user", content: "hello" };

describe("RedisSessionStore", () => {
  it("a fenced append writes only while the fence key holds the writer's token, in one script", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("fence");
    const store = new RedisSessionStore({ redis: client, prefix });
    const fence = { key: `${prefix}:job:lock`, token: "attempt-1" };
    await client.set(fence.key, "attempt-1");
    expect(await store.append("s1", [hello], { fence, once: "t1" })).toBe(true);
    await client.set(fence.key, "attempt-2"); // another attempt took the task
    const err = await store.append("s1", [hello], { fence, once: "t2" }).catch((e: unknown) => e);
    expect(isAgentryError(err, "LOCK_LOST")).toBe(true);
    // Nothing was written, and the once key of the refused append was not used up.
    expect(await store.load("s1")).toEqual([hello]);
    expect(await store.append("s1", [hello], { fence: { ...fence, token: "attempt-2" }, once: "t2" })).toBe(
      true,
    );
    expect(await store.load("s1")).toEqual([hello, hello]);
  });

  it("sets the TTL on append and refreshes it on load", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("ttl");
    const store = new RedisSessionStore({ redis: client, prefix, ttlMs: 60_000 });
    await store.append("s1", [hello]);
    const key = `${prefix}:session:s1:messages`;
    const afterAppend = await client.pttl(key);
    expect(afterAppend).toBeGreaterThan(0);
    expect(afterAppend).toBeLessThanOrEqual(60_000);
    await client.pexpire(key, 1_000);
    await store.load("s1");
    expect(await client.pttl(key)).toBeGreaterThan(1_000);
  });

  it("keeps only maxMessages messages in Redis", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("trim");
    const store = new RedisSessionStore({ redis: client, prefix, maxMessages: 4 });
    for (let i = 0; i < 5; i++) await store.append("s1", [hello, { role: "assistant", content: `a${i}` }]);
    expect(await client.llen(`${prefix}:session:s1:messages`)).toBe(4);
  });

  it("escapes session ids so they cannot reach other keys or hash tags", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("escape");
    const store = new RedisSessionStore({ redis: client, prefix });
    await store.append("{tag}:x", [hello]);
    expect(await client.exists(`${prefix}:session:%7Btag%7D%3Ax:messages`)).toBe(1);
  });
});

describe("InMemorySessionStore", () => {
  it("expires an idle session after ttlMs and refreshes the TTL on every use", async () => {
    let now = 1_000;
    const store = new InMemorySessionStore({ ttlMs: 100, _internal: { now: () => now } });
    await store.append("s1", [hello]);
    now += 90;
    expect(await store.load("s1")).toEqual([hello]); // refreshes
    now += 90;
    expect(await store.exists("s1")).toBe(true);
    now += 20;
    expect(await store.exists("s1")).toBe(false);
    expect(await store.load("s1")).toEqual([]);
  });
});
