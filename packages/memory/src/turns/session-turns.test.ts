import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { sessionTurnsConformance } from "../testing.js";
import { InMemorySessionTurns } from "./in-memory-session-turns.js";
import { RedisSessionTurns } from "./redis-session-turns.js";

const redis = useTestRedis("turns");

sessionTurnsConformance("redis", () => {
  const prefix = redis.freshPrefix("turns");
  return Promise.resolve({ connect: () => new RedisSessionTurns({ redis: redis.client(), prefix }) });
});
sessionTurnsConformance("in-memory", () => {
  const turns = new InMemorySessionTurns();
  return Promise.resolve({ connect: () => turns });
});

describe("RedisSessionTurns", () => {
  it("leaves no keys behind once every task of a session has run", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("keys");
    const turns = new RedisSessionTurns({ redis: client, prefix });
    await turns.enqueue("s", "t1");
    const lease = await turns.tryAcquire("s", "t1", 10_000);
    expect(lease).not.toBeNull();
    if (lease) await turns.release(lease);
    expect(await client.keys(`${prefix}:*`)).toEqual([]);
  });

  it("a fenced release ends the turn only while the fence holds", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("fence");
    const turns = new RedisSessionTurns({ redis: client, prefix });
    await turns.enqueue("s", "t1");
    await turns.enqueue("s", "t2");
    const lease = await turns.tryAcquire("s", "t1", 10_000);
    expect(lease).not.toBeNull();
    const fence = { key: `${prefix}:job:lock`, token: "attempt-1" };
    await client.set(fence.key, "attempt-2"); // the attempt lost its job to another one
    expect(await turns.release(lease!, { fence })).toBe(false);
    expect(await turns.head("s")).toBe("t1");
    expect(await turns.tryAcquire("s", "t2", 10_000)).toBeNull();
    await client.set(fence.key, "attempt-1");
    expect(await turns.release(lease!, { fence })).toBe(true);
    expect(await turns.head("s")).toBe("t2");
  });
});

describe("InMemorySessionTurns", () => {
  it("lets the same task re-take its turn once the lease expires, by the injected clock", async () => {
    let now = 0;
    const turns = new InMemorySessionTurns({ _internal: { now: () => now } });
    await turns.enqueue("s", "t1");
    await turns.enqueue("s", "t2");
    const first = await turns.tryAcquire("s", "t1", 100);
    expect(first?.expiresAt).toBe(100);
    now = 99;
    expect(await turns.tryAcquire("s", "t1", 100)).toBeNull();
    now = 100;
    expect(await turns.tryAcquire("s", "t2", 100)).toBeNull();
    expect((await turns.tryAcquire("s", "t1", 100))?.taskId).toBe("t1");
  });
});
