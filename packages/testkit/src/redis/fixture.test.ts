import { describe, expect, it } from "vitest";
import { startRedisServer, useTestRedis } from "../index.js";

describe("test Redis fixture", () => {
  const redis = useTestRedis("fixture");

  it("hands out a unique prefix and a working client", async () => {
    const c = redis.client();
    await c.set(`${redis.prefix}:k`, "v");
    expect(await c.get(`${redis.prefix}:k`)).toBe("v");
    expect(redis.freshPrefix()).not.toBe(redis.prefix);
  });

  it("starts and stops a private redis-server", async () => {
    const server = await startRedisServer();
    const c = redis.client({ lazyConnect: false });
    c.disconnect();
    const { Redis } = await import("ioredis");
    const own = new Redis(server.url);
    expect(await own.ping()).toBe("PONG");
    own.disconnect();
    await server.stop();
  });
});
