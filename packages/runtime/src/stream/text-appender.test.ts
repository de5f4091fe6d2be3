import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { startRedisServer, type TestRedisServer } from "@agentry/testkit";
import { TextAppender } from "./text-appender.js";

// A private server: the first appends must find the script missing and send it whole.
let server: TestRedisServer & { stop(): Promise<void> };
let conn: Redis;
beforeAll(async () => {
  server = await startRedisServer();
  conn = new Redis(server.url);
});
afterAll(async () => {
  conn.disconnect();
  await server.stop();
});

describe("TextAppender", () => {
  it("sends the appends of many tasks in one tick together, each fenced by its own lock, loading the script on a server that lacks it", async () => {
    const target = (task: string) => ({ lock: `p:tasks:${task}:lock`, stream: `p:tasks:${task}:stream` });
    await conn.mset(target("a").lock, "token-a", target("b").lock, "token-b", target("c").lock, "token-c");
    const appender = new TextAppender(conn, { tickMs: 20 });
    const results = await Promise.all([
      appender.append(target("a"), "token-a", [{ step: 1, offset: 0, text: "alpha " }]),
      appender.append(target("b"), "token-b", [{ step: 1, offset: 0, text: "beta" }]),
      appender.append(target("c"), "stale", [{ step: 1, offset: 0, text: "never" }]),
      appender.append(target("a"), "token-a", [{ step: 1, offset: 6, text: "again" }]),
    ]);
    expect(results).toEqual([true, true, false, true]);
    const texts = async (task: string) =>
      ((await conn.xrange(target(task).stream, "-", "+")) as [string, string[]][]).map(
        ([, f]) => f[f.indexOf("text") + 1],
      );
    expect(await texts("a")).toEqual(["alpha ", "again"]);
    expect(await texts("b")).toEqual(["beta"]);
    expect(await conn.exists(target("c").stream)).toBe(0);
    // Now cached: the next tick goes by hash alone.
    expect(await appender.append(target("b"), "token-b", [{ step: 1, offset: 4, text: "!" }])).toBe(true);
    expect(await texts("b")).toEqual(["beta", "!"]);
  });
});
