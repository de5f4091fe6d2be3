import { describe, expect, it } from "vitest";
import { useTestRedis } from "@agentry/testkit";
import { fieldEquals, fieldIn, fieldMatches, matchPolicy } from "./match-policy.js";
import { noProductionDelete } from "./no-production-delete.js";
import { rateCap } from "./rate-cap.js";
import { toolAllowList, toolDenyList } from "./tool-lists.js";
import { SafetyValidator } from "./validator.js";
import type { Action, PolicyContext } from "./types.js";

const redis = useTestRedis("gov-policies");
const base = { taskId: "task1", tenant: "acme", userId: "u", sessionId: "s" };
const act = (tool: string, input: unknown, extra: Partial<Action> = {}): Action => ({
  tool,
  input,
  ...base,
  ...extra,
});
const ctx: PolicyContext = { now: 0 };

describe("noProductionDelete", () => {
  const p = noProductionDelete();
  it("denies destructive tools aimed at production", async () => {
    for (const tool of ["delete_resource", "destroyCluster", "drop-table", "purge_cache", "remove"]) {
      expect(await p.evaluate(act(tool, { env: "production" }), ctx)).toEqual({
        type: "deny",
        reason: "Production deletes are forbidden",
      });
    }
    expect((await p.evaluate(act("update", { type: "delete", env: "production" }), ctx)).type).toBe("deny");
    expect((await p.evaluate(act("delete_resource", {}, { env: "production" }), ctx)).type).toBe("deny");
  });
  it("allows deletes elsewhere and harmless tools in production", async () => {
    expect(await p.evaluate(act("delete_resource", { env: "staging" }), ctx)).toEqual({ type: "allow" });
    expect(await p.evaluate(act("get_weather", { env: "production" }), ctx)).toEqual({ type: "allow" });
    expect(await p.evaluate(act("dropdown_options", { env: "production" }), ctx)).toEqual({ type: "allow" });
  });
});

describe("tool lists", () => {
  it("allow list denies tools not listed", async () => {
    const p = toolAllowList({ tools: ["get_weather"] });
    expect(await p.evaluate(act("get_weather", {}), ctx)).toEqual({ type: "allow" });
    expect(await p.evaluate(act("shell", {}), ctx)).toMatchObject({
      type: "deny",
      reason: "tool shell is not on the allow list",
    });
  });
  it("deny list denies tools listed", async () => {
    const p = toolDenyList({ tools: ["shell"] });
    expect(await p.evaluate(act("get_weather", {}), ctx)).toEqual({ type: "allow" });
    expect(await p.evaluate(act("shell", {}), ctx)).toMatchObject({ type: "deny" });
  });
});

describe("matchPolicy (argument matchers)", () => {
  const deny = { type: "deny" as const, reason: "nope" };
  it("equals on a nested path", async () => {
    const p = matchPolicy({
      name: "m",
      tool: "pay",
      conditions: [fieldEquals("to.country", "XX")],
      then: deny,
    });
    expect(await p.evaluate(act("pay", { to: { country: "XX" } }), ctx)).toEqual(deny);
    expect(await p.evaluate(act("pay", { to: { country: "FR" } }), ctx)).toEqual({ type: "allow" });
    expect(await p.evaluate(act("other", { to: { country: "XX" } }), ctx)).toEqual({ type: "allow" });
  });
  it("in and matches, all conditions must hold", async () => {
    const p = matchPolicy({
      name: "m",
      tool: /^db_/,
      conditions: [fieldIn("env", ["prod", "production"]), fieldMatches("sql", /\bDROP\b/i)],
      then: deny,
    });
    expect(await p.evaluate(act("db_exec", { env: "prod", sql: "drop table x" }), ctx)).toEqual(deny);
    expect(await p.evaluate(act("db_exec", { env: "dev", sql: "drop table x" }), ctx)).toEqual({
      type: "allow",
    });
    expect(await p.evaluate(act("db_exec", { env: "prod", sql: "select 1" }), ctx)).toEqual({
      type: "allow",
    });
    expect(await p.evaluate(act("db_exec", { env: "prod", sql: 42 }), ctx)).toEqual({ type: "allow" });
  });
});

describe("rateCap", () => {
  it("caps runs per task atomically across clients, in Redis", async () => {
    const prefix = redis.freshPrefix("cap");
    const p = rateCap({ tool: "send_email", max: 3, per: "task", windowMs: 3_600_000 });
    const clients = [redis.client(), redis.client(), redis.client()];
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        Promise.resolve(p.evaluate(act("send_email", {}), { now: 1_000, redis: clients[i % 3], prefix })),
      ),
    );
    expect(results.filter((r) => r.type === "allow")).toHaveLength(3);
    // Another task has its own count; other tools are not counted.
    expect(
      (
        await p.evaluate(act("send_email", {}, { taskId: "task2" }), {
          now: 1_000,
          redis: clients[0],
          prefix,
        })
      ).type,
    ).toBe("allow");
    expect((await p.evaluate(act("get_weather", {}), { now: 1_000, redis: clients[0], prefix })).type).toBe(
      "allow",
    );
  });

  it("per tenant counts across tasks, and a new window starts afresh", async () => {
    const prefix = redis.freshPrefix("cap");
    const client = redis.client();
    const p = rateCap({ tool: "x", max: 1, per: "tenant", windowMs: 60_000 });
    expect((await p.evaluate(act("x", {}, { taskId: "a" }), { now: 0, redis: client, prefix })).type).toBe(
      "allow",
    );
    expect((await p.evaluate(act("x", {}, { taskId: "b" }), { now: 10, redis: client, prefix })).type).toBe(
      "deny",
    );
    expect(
      (await p.evaluate(act("x", {}, { taskId: "b", tenant: "other" }), { now: 10, redis: client, prefix }))
        .type,
    ).toBe("allow");
    expect(
      (await p.evaluate(act("x", {}, { taskId: "c" }), { now: 60_000, redis: client, prefix })).type,
    ).toBe("allow");
  });

  it("a task id of another tenant has its own count", async () => {
    const prefix = redis.freshPrefix("cap");
    const client = redis.client();
    const p = rateCap({ tool: "x", max: 1, per: "task", windowMs: 60_000 });
    expect((await p.evaluate(act("x", {}, { taskId: "t1" }), { now: 0, redis: client, prefix })).type).toBe(
      "allow",
    );
    expect((await p.evaluate(act("x", {}, { taskId: "t1" }), { now: 1, redis: client, prefix })).type).toBe(
      "deny",
    );
    expect(
      (await p.evaluate(act("x", {}, { taskId: "t1", tenant: "other" }), { now: 1, redis: client, prefix }))
        .type,
    ).toBe("allow");
  });

  it("a recheck (approval resume) does not count the action again", async () => {
    const prefix = redis.freshPrefix("cap");
    const v = new SafetyValidator({
      policies: [rateCap({ tool: "x", max: 1, per: "task", windowMs: 3_600_000 })],
      redis: redis.client(),
      prefix,
    });
    expect((await v.validate(act("x", {}))).verdict.type).toBe("allow");
    expect((await v.validate(act("x", {}), { recheck: true })).verdict.type).toBe("allow");
    expect((await v.validate(act("x", {}))).verdict.type).toBe("deny");
  });

  it("without Redis the validator denies (fail closed)", async () => {
    const v = new SafetyValidator({
      policies: [rateCap({ tool: "x", max: 1, per: "task", windowMs: 1000 })],
    });
    const r = await v.validate(act("x", {}));
    expect(r.verdict).toEqual({
      type: "deny",
      reason: "policy rate-cap:x:task failed: no Redis connection to count with",
    });
  });
});
