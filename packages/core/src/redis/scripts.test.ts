import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it, inject } from "vitest";
import { AgentryError } from "../errors/agentry-error.js";
import { privateServerClient } from "./private-server.testing.js";
import { defineScripts, scriptCommandName } from "./scripts.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

const scripts = defineScripts<{
  echoCall: (keys: [a: string, b: string], args: (string | number)[]) => string[];
  countKeys: (keys: string[], args: [value: string]) => number;
  readBlob: (keys: [key: string], args: []) => Buffer | null;
}>(import.meta.url, {
  echoCall: "./fixtures/echo-call-2.lua",
  countKeys: "./fixtures/count-keys.lua",
  readBlob: { file: "./fixtures/read-blob-1.lua", replies: "buffer" },
});

const prefix = `test-scripts-${randomBytes(5).toString("hex")}`;
const clients: Redis[] = [];
const client = () => {
  const c = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
  clients.push(c);
  return c;
};

/**
 * A client of a private redis-server on a unix socket, stopped when the test ends: a test that
 * flushes the script cache must not flush the shared server under other suites' open connections.
 * (The testkit's server helper is not a dependency of core.)
 */
afterAll(async () => {
  const admin = clients[0] ?? client();
  const keys = await admin.keys(`${prefix}:*`);
  if (keys.length > 0) await admin.del(...keys);
  await Promise.all(clients.map((c) => c.quit()));
});

describe("defineScripts", () => {
  it("names each command agentry + the file's name in PascalCase, without the key count", () => {
    expect(scriptCommandName("take-submit-tokens-1.lua")).toBe("agentryTakeSubmitTokens");
    expect(scriptCommandName("./budget/reserve-budget.lua")).toBe("agentryReserveBudget");
  });

  it("runs a fixed-key script with its keys and args in order, defining it once per client", async () => {
    const redis = client();
    expect(await scripts.echoCall(redis, [`${prefix}:a`, `${prefix}:b`], ["x", 2])).toEqual([
      `${prefix}:a`,
      `${prefix}:b`,
      "x",
      "2",
    ]);
    expect(typeof (redis as unknown as Record<string, unknown>)["agentryEchoCall"]).toBe("function");
    expect(await scripts.echoCall(redis, [`${prefix}:c`, `${prefix}:d`], [])).toEqual([
      `${prefix}:c`,
      `${prefix}:d`,
    ]);
  });

  it("passes the number of keys first for a script whose file name has none", async () => {
    const redis = client();
    const keys = [1, 2, 3].map((i) => `${prefix}:count:${i}`);
    expect(await scripts.countKeys(redis, keys, ["v"])).toBe(3);
    expect(await redis.mget(...keys)).toEqual(["v", "v", "v"]);
    expect(await scripts.countKeys(redis, [], ["v"])).toBe(0);
  });

  it("refuses a call with the wrong number of keys before sending anything", async () => {
    const redis = client();
    const err = await scripts
      .echoCall(redis, [`${prefix}:only`] as unknown as [string, string], [])
      .catch((e: unknown) => e);
    expect(AgentryError.isInstance(err) && err.code).toBe("INTERNAL");
    expect((err as Error).message).toMatch(/echo-call-2\.lua takes 2 keys, got 1/);
  });

  it("returns bulk replies as Buffers when the script is declared with buffer replies", async () => {
    const redis = client();
    const blob = Buffer.from([0, 255, 128, 10, 0]);
    await redis.set(`${prefix}:blob`, blob, "PX", 60_000);
    const reply = await scripts.readBlob(redis, [`${prefix}:blob`], []);
    expect(Buffer.isBuffer(reply) && reply.equals(blob)).toBe(true);
    expect(await scripts.readBlob(redis, [`${prefix}:missing`], [])).toBeNull();
  });

  it("queues calls on a pipeline of a client it was defined on, replies in order from exec", async () => {
    const redis = await privateServerClient();
    expect(() => scripts.echoCall.queue(redis.pipeline(), [`${prefix}:p`, `${prefix}:q`], [])).toThrow(
      /defineOn/,
    );
    scripts.echoCall.defineOn(redis);
    scripts.echoCall.defineOn(redis);
    await redis.script("FLUSH");
    const pipeline = redis.pipeline();
    scripts.echoCall.queue(pipeline, [`${prefix}:p1`, `${prefix}:q1`], ["one"]);
    scripts.countKeys.defineOn(redis);
    scripts.echoCall.queue(pipeline, [`${prefix}:p2`, `${prefix}:q2`], [2]);
    expect(await pipeline.exec()).toEqual([
      [null, [`${prefix}:p1`, `${prefix}:q1`, "one"]],
      [null, [`${prefix}:p2`, `${prefix}:q2`, "2"]],
    ]);
    expect(() =>
      scripts.echoCall.queue(redis.pipeline(), [`${prefix}:only`] as unknown as [string, string], []),
    ).toThrow(/takes 2 keys/);
  });

  it("still runs after the server forgot its scripts (EVALSHA falls back to EVAL)", async () => {
    const redis = await privateServerClient();
    expect(await scripts.countKeys(redis, [`${prefix}:flush:1`], ["before"])).toBe(1);
    await redis.script("FLUSH");
    expect(await scripts.countKeys(redis, [`${prefix}:flush:1`, `${prefix}:flush:2`], ["after"])).toBe(2);
    expect(await redis.mget(`${prefix}:flush:1`, `${prefix}:flush:2`)).toEqual(["after", "after"]);
  });

  it("runs on a client that auto-pipelines, first called in the tick another command opened the pipeline", async () => {
    const redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null, enableAutoPipelining: true });
    clients.push(redis);
    await redis.ping();
    // The pipeline this tick's commands share opens with the SET, before echoCall is defined on
    // the client: a call through the defined command would find the pipeline without it.
    const fresh = defineScripts<{ echoCall: (keys: [a: string, b: string], args: string[]) => string[] }>(
      import.meta.url,
      { echoCall: "./fixtures/echo-call-2.lua" },
    );
    const [set, echo, get] = await Promise.all([
      redis.set(`${prefix}:ap`, "v"),
      fresh.echoCall(redis, [`${prefix}:ap1`, `${prefix}:ap2`], ["x"]),
      redis.get(`${prefix}:ap`),
    ]);
    expect([set, echo, get]).toEqual(["OK", [`${prefix}:ap1`, `${prefix}:ap2`, "x"], "v"]);
  });

  it("refuses a file not named <kebab-case-name>[-<keys>].lua, a missing file, a script reading more keys than its name says, and a second script under a taken name", () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return AgentryError.isInstance(err) ? err.code : "plain error";
      }
      return "no error";
    };
    expect(code(() => defineScripts(import.meta.url, { bad: "./fixtures/EchoCall.lua" }))).toBe("INTERNAL");
    expect(code(() => defineScripts(import.meta.url, { bad: "./fixtures/echo_call-2.lua" }))).toBe(
      "INTERNAL",
    );
    expect(code(() => defineScripts(import.meta.url, { missing: "./fixtures/no-such-script-1.lua" }))).toBe(
      "INTERNAL",
    );
    expect(
      code(() => defineScripts(import.meta.url, { miscounted: "./fixtures/miscounted/read-two-keys-1.lua" })),
    ).toBe("INTERNAL");
    expect(code(() => defineScripts(import.meta.url, { clash: "./fixtures/other/echo-call-2.lua" }))).toBe(
      "INTERNAL",
    );
    // The same file again is the same script: defining it twice is fine.
    expect(code(() => defineScripts(import.meta.url, { again: "./fixtures/echo-call-2.lua" }))).toBe(
      "no error",
    );
  });
});
