import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import { privateServerClient } from "../redis/private-server.testing.js";
import { AgentryError, agentryErrorDataSchema, isAgentryError } from "../index.js";

describe("AgentryError", () => {
  it("defaults category and retryable from the code", () => {
    const e = new AgentryError("PROVIDER_RATE_LIMITED", "slow down", { retryAfterMs: 1500 });
    expect(e.category).toBe("provider");
    expect(e.retryable).toBe(true);
    expect(new AgentryError("POLICY_DENIED", "no").retryable).toBe(false);
  });

  it("is recognised by brand, not by class identity", () => {
    const e = new AgentryError("BUDGET_EXCEEDED", "over");
    const copy = Object.assign(Object.create(Error.prototype), { [Symbol.for("agentry.error")]: true });
    expect(AgentryError.isInstance(e)).toBe(true);
    expect(AgentryError.isInstance(copy)).toBe(true);
    expect(AgentryError.isInstance(new Error("x"))).toBe(false);
    expect(isAgentryError(e, "BUDGET_EXCEEDED")).toBe(true);
    expect(isAgentryError(e, "POLICY_DENIED")).toBe(false);
  });

  it("round-trips through plain data", () => {
    const e = new AgentryError("BUDGET_EXCEEDED", "tenant:a over", { details: { scope: "tenant:a" } });
    const data = agentryErrorDataSchema.parse(JSON.parse(JSON.stringify(e.toData())));
    const back = AgentryError.fromData(data);
    expect(back.code).toBe("BUDGET_EXCEEDED");
    expect(back.details).toEqual({ scope: "tenant:a" });
    expect(back.message).toBe("tenant:a over");
  });

  it("wraps foreign errors as INTERNAL with the cause kept", () => {
    const cause = new TypeError("boom");
    const e = AgentryError.from(cause);
    expect(e.code).toBe("INTERNAL");
    expect(e.cause).toBe(cause);
  });

  it("wraps Redis replies that pass with time as retryable REDIS_UNAVAILABLE, and other replies as INTERNAL", async () => {
    const redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: 1 });
    onTestFinished(() => redis.disconnect());
    const key = `test-agentry-error-${process.pid}-${Date.now()}`;
    const noScript = await redis.evalsha("f".repeat(40), 0).catch((e: unknown) => e);
    expect(AgentryError.from(noScript)).toMatchObject({ code: "REDIS_UNAVAILABLE", retryable: true });
    expect(AgentryError.from(noScript).message).toMatch(/^NOSCRIPT/);
    // A fallback other than INTERNAL is the caller's choice and stays.
    expect(AgentryError.from(noScript, "AUDIT_FAILED").code).toBe("AUDIT_FAILED");
    await redis.set(key, "x");
    const wrongType = await redis.lpush(key, "y").catch((e: unknown) => e);
    expect(AgentryError.from(wrongType)).toMatchObject({ code: "INTERNAL", retryable: false });
    await redis.del(key);
    redis.disconnect();
    const closed = await redis.get(key).catch((e: unknown) => e);
    expect(AgentryError.from(closed)).toMatchObject({ code: "REDIS_UNAVAILABLE", retryable: true });
  });

  it("wraps writes refused after a snapshot failed (MISCONF: a full or failed disk) as retryable REDIS_UNAVAILABLE", async () => {
    // Moving its directory is a protected setting.
    const redis = await privateServerClient(["--enable-protected-configs", "yes"]);
    // Its working directory removed under it, a background save fails (for root too); with saves
    // configured, Redis then refuses writes until a save succeeds (stop-writes-on-bgsave-error).
    const gone = mkdtempSync(join(tmpdir(), "agentry-rdb-"));
    await redis.config("SET", "dir", gone);
    await redis.config("SET", "save", "3600 1");
    rmSync(gone, { recursive: true });
    await redis.bgsave();
    await expect
      .poll(async () =>
        /rdb_bgsave_in_progress:0[\s\S]*rdb_last_bgsave_status:err/.test(await redis.info("persistence")),
      )
      .toBe(true);
    const refused = await redis.set("k", "v").catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/^MISCONF/);
    expect(AgentryError.from(refused)).toMatchObject({ code: "REDIS_UNAVAILABLE", retryable: true });
    const discarded = await redis
      .multi()
      .set("k", "v")
      .exec()
      .catch((e: unknown) => e);
    expect(AgentryError.from(discarded)).toMatchObject({ code: "REDIS_UNAVAILABLE", retryable: true });
  });

  it("wraps writes refused for want of replicas in sync (NOREPLICAS) as retryable REDIS_UNAVAILABLE", async () => {
    const redis = await privateServerClient();
    await redis.config("SET", "min-replicas-to-write", "1");
    const refused = await redis.set("k", "v").catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/^NOREPLICAS/);
    expect(AgentryError.from(refused)).toMatchObject({ code: "REDIS_UNAVAILABLE", retryable: true });
  });

  it("wraps a transaction discarded for replies that pass with time as REDIS_UNAVAILABLE, and for others as INTERNAL", async () => {
    // Memory is full (noeviction): a write queued in MULTI is refused with OOM, so EXEC discards it.
    const full = await privateServerClient(["--maxmemory-policy", "noeviction"]);
    await full.config("SET", "maxmemory", "1");
    const oom = await full
      .multi()
      .set("k", "v")
      .exec()
      .catch((e: unknown) => e);
    expect((oom as Error).message).toMatch(/^EXECABORT/);
    expect(AgentryError.from(oom)).toMatchObject({ code: "REDIS_UNAVAILABLE", retryable: true });
    // A command the server refuses whatever happens (wrong arity) discards it for good.
    const redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: 1 });
    onTestFinished(() => redis.disconnect());
    const wrong = await redis
      .multi()
      .call("GET", "a", "b")
      .exec()
      .catch((e: unknown) => e);
    expect((wrong as Error).message).toMatch(/^EXECABORT/);
    expect(AgentryError.from(wrong)).toMatchObject({ code: "INTERNAL", retryable: false });
  });
});
