import { AgentryError } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { budgetError } from "./budget-error.js";
import { BudgetLedger, type BudgetLedgerOptions } from "./ledger.js";
import { budgetScopeKind, isBudgetScope, parseScope, type BudgetScope } from "./scope.js";
import type { ExpiredReservation } from "./types.js";

const redis = useTestRedis("budget");

function manualClock(iso = "2026-11-25T10:00:00Z") {
  return {
    t: Date.parse(iso),
    now() {
      return this.t;
    },
  };
}

function ledger(opts: Partial<BudgetLedgerOptions> = {}) {
  return new BudgetLedger({ redis: redis.client(), prefix: `{${redis.freshPrefix("ledger")}}`, ...opts });
}

const amount = (tokens: number, costMicroUsd = 0) => ({ tokens, costMicroUsd });

describe("parseScope", () => {
  it("accepts the four scope kinds and rejects anything else with INVALID_INPUT", () => {
    expect(parseScope("global")).toBe("global");
    expect(parseScope("tenant:acme")).toBe("tenant:acme");
    expect(parseScope("tenant:acme:user:alice@example.com")).toBe("tenant:acme:user:alice@example.com");
    expect(parseScope("tenant:acme:session:s-1")).toBe("tenant:acme:session:s-1");
    for (const bad of ["", "tenant:", "tenant", "team:x", "user:a b", "tenant:acme:session:{x}", "Global"]) {
      expect(() => parseScope(bad)).toThrow(expect.objectContaining({ code: "INVALID_INPUT" }));
    }
  });

  it("refuses the scope forms from before tenancy, naming the new form", () => {
    expect(() => parseScope("user:bob")).toThrow(/tenant:<tenant>:user:bob/);
    expect(() => parseScope("session:s1")).toThrow(/tenant:<tenant>:session:s1/);
    // A tenant id with ':' would make scopes ambiguous (tenant "a:b" + user "c" vs tenant "a" + user "b:c").
    expect(isBudgetScope("tenant:a:b:user:c")).toBe(false);
    expect(isBudgetScope("tenant:a:user:b:c")).toBe(true);
    expect(budgetScopeKind("tenant:a:user:b:c")).toBe("user");
    expect(budgetScopeKind("tenant:a:session:s")).toBe("session");
    expect(budgetScopeKind("tenant:a")).toBe("tenant");
  });
});

describe("BudgetLedger limits", () => {
  it("sets, reads, replaces and removes a limit, and lists scopes", async () => {
    const l = ledger();
    expect(await l.getLimit("tenant:acme")).toBeNull();
    await l.setLimit("tenant:acme", { maxTokens: 1_000, maxCostMicroUsd: 5_000, period: "day" });
    expect(await l.getLimit("tenant:acme")).toEqual({
      maxTokens: 1_000,
      maxCostMicroUsd: 5_000,
      period: "day",
    });
    await l.setLimit("tenant:acme", { maxTokens: 2_000, period: "none" });
    expect(await l.getLimit("tenant:acme")).toEqual({ maxTokens: 2_000, period: "none" });
    await l.setLimit("global", { maxCostMicroUsd: 10, period: "month" });
    await l.reserve({ taskId: "t", scopes: ["tenant:acme:user:u1"], amount: amount(1) });
    expect(await l.listScopes()).toEqual(["global", "tenant:acme", "tenant:acme:user:u1"]);
    await l.removeLimit("tenant:acme");
    expect(await l.getLimit("tenant:acme")).toBeNull();
  });

  it("keeps an unlimited session scope as expiring accounting, not a listed scope", async () => {
    const client = redis.client();
    const prefix = `{${redis.freshPrefix("ledger")}}`;
    const l = new BudgetLedger({ redis: client, prefix });
    const r = await l.reserve({
      taskId: "t",
      scopes: ["global", "tenant:acme:session:s1"],
      amount: amount(5),
    });
    if (!r.ok) throw new Error("reserve failed");
    await l.settle(r.reservation.id, amount(4));
    expect(await l.listScopes()).toEqual(["global"]);
    expect((await l.getStats("tenant:acme:session:s1")).used.tokens).toBe(4);
    const keys = await client.keys(`${prefix}:budget:usage:tenant:acme:session:s1:*`);
    expect(keys).toHaveLength(1);
    expect(await client.ttl(keys[0] as string)).toBeGreaterThan(29 * 24 * 3600);
    // With a limit, a session is budgeted like any other scope: listed, usage kept.
    await l.setLimit("tenant:acme:session:s2", { maxTokens: 100, period: "none" });
    await l.reserve({ taskId: "t", scopes: ["tenant:acme:session:s2"], amount: amount(5) });
    expect(await l.listScopes()).toEqual(["global", "tenant:acme:session:s2"]);
    expect(await client.ttl(`${prefix}:budget:usage:tenant:acme:session:s2:none`)).toBe(-1);
  });

  it("a session charged as accounting only, then limited, then unlimited again: its usage is kept, listed and expiring as each says", async () => {
    const client = redis.client();
    const prefix = `{${redis.freshPrefix("ledger")}}`;
    const l = new BudgetLedger({ redis: client, prefix });
    const usage = `${prefix}:budget:usage:tenant:acme:session:s1:none`;
    const charge = async (tokens: number) => {
      const r = await l.reserve({ taskId: "t", scopes: ["tenant:acme:session:s1"], amount: amount(tokens) });
      if (!r.ok) throw new Error("reserve failed");
      await l.settle(r.reservation.id, amount(tokens));
    };
    await charge(3);
    await charge(3);
    expect(await client.ttl(usage)).toBeGreaterThan(29 * 24 * 3600);
    expect(await l.listScopes()).toEqual([]);
    // Limited now: the same usage hash, no longer expiring, listed; kept so from the first reserve on.
    await l.setLimit("tenant:acme:session:s1", { maxTokens: 100, period: "none" });
    await l.removeLimit("tenant:acme:session:s1");
    await l.setLimit("tenant:acme:session:s1", { maxTokens: 100, period: "none" });
    await client.srem(`${prefix}:budget:scopes`, "tenant:acme:session:s1");
    await charge(4);
    expect(await client.ttl(usage)).toBe(-1);
    expect(await l.listScopes()).toEqual(["tenant:acme:session:s1"]);
    await charge(4);
    expect((await l.getStats("tenant:acme:session:s1")).used.tokens).toBe(14);
    // Unlimited again: accounting only, expiring once more.
    await l.removeLimit("tenant:acme:session:s1");
    await charge(1);
    expect(await client.ttl(usage)).toBeGreaterThan(29 * 24 * 3600);
    // And limited again: the expiry goes at the next reserve.
    await l.setLimit("tenant:acme:session:s1", { maxTokens: 100, period: "none" });
    await charge(1);
    expect(await client.ttl(usage)).toBe(-1);
    expect((await l.getStats("tenant:acme:session:s1")).used.tokens).toBe(16);
  });

  it("a day-limited scope's usage hash expires: its first reserve of the day sets the expiry, later ones keep it", async () => {
    const client = redis.client();
    const prefix = `{${redis.freshPrefix("ledger")}}`;
    const l = new BudgetLedger({ redis: client, prefix });
    await l.setLimit("tenant:acme", { maxTokens: 1_000, period: "day" });
    for (let i = 0; i < 3; i++) {
      const r = await l.reserve({ taskId: "t", scopes: ["tenant:acme"], amount: amount(2) });
      if (!r.ok) throw new Error("reserve failed");
      await l.settle(r.reservation.id, amount(2));
    }
    const [key] = await client.keys(`${prefix}:budget:usage:tenant:acme:*`);
    const ttl = await client.ttl(key as string);
    expect(ttl).toBeGreaterThan(0);
    expect((await l.getStats("tenant:acme")).used.tokens).toBe(6);
  });

  it("rejects limits that are not non-negative integers or cap nothing", async () => {
    const l = ledger();
    await expect(l.setLimit("global", { maxTokens: 1.5, period: "none" })).rejects.toMatchObject({
      code: "INVALID_INPUT",
    });
    await expect(l.setLimit("global", { maxTokens: -1, period: "none" })).rejects.toMatchObject({
      code: "INVALID_INPUT",
    });
    await expect(l.setLimit("global", { period: "day" })).rejects.toMatchObject({ code: "INVALID_INPUT" });
    await expect(
      l.reserve({ taskId: "t", scopes: ["global"], amount: { tokens: 1, costMicroUsd: 0.5 } }),
    ).rejects.toMatchObject({ code: "INVALID_INPUT" });
    await expect(
      l.reserve({ taskId: "t", scopes: ["global", "global"], amount: amount(1) }),
    ).rejects.toMatchObject({
      code: "INVALID_INPUT",
    });
  });
});

describe("BudgetLedger reserve", () => {
  it("reserves on all scopes or on none", async () => {
    const l = ledger();
    await l.setLimit("global", { maxTokens: 10_000, period: "none" });
    await l.setLimit("tenant:acme:user:bob", { maxTokens: 500, period: "none" });
    const scopes: BudgetScope[] = ["global", "tenant:acme", "tenant:acme:user:bob", "tenant:acme:session:s1"];

    const refused = await l.reserve({ taskId: "t1", scopes, amount: amount(600) });
    expect(refused).toMatchObject({
      ok: false,
      reason: "exceeded",
      scope: "tenant:acme:user:bob",
      dimension: "tokens",
    });
    for (const s of scopes) expect((await l.getStats(s)).reserved.tokens).toBe(0);

    const ok = await l.reserve({ taskId: "t1", scopes, amount: amount(400, 7) });
    expect(ok.ok).toBe(true);
    for (const s of scopes) expect((await l.getStats(s)).reserved).toEqual(amount(400, 7));
  });

  it("tells exceeded (never fits) from contended (fits once in-flight calls settle)", async () => {
    const l = ledger({ contendedRetryMs: 250 });
    await l.setLimit("tenant:acme", { maxTokens: 10_000, maxCostMicroUsd: 1_000_000, period: "none" });
    const first = await l.reserve({ taskId: "a", scopes: ["tenant:acme"], amount: amount(9_000) });
    if (!first.ok) throw new Error("first reservation refused");
    await l.settle(first.reservation.id, amount(8_000));
    const inFlight = await l.reserve({ taskId: "b", scopes: ["tenant:acme"], amount: amount(1_500) });
    expect(inFlight.ok).toBe(true);

    const contended = await l.reserve({ taskId: "c", scopes: ["tenant:acme"], amount: amount(1_000) });
    expect(contended).toEqual({
      ok: false,
      reason: "contended",
      retryAfterMs: 250,
      scope: "tenant:acme",
      dimension: "tokens",
      period: "none",
      limit: { maxTokens: 10_000, maxCostMicroUsd: 1_000_000, period: "none" },
      used: amount(8_000),
      reserved: amount(1_500),
      requested: amount(1_000),
    });
    const exceeded = await l.reserve({ taskId: "c", scopes: ["tenant:acme"], amount: amount(2_001) });
    expect(exceeded).toMatchObject({
      ok: false,
      reason: "exceeded",
      used: amount(8_000),
      requested: amount(2_001),
    });

    const byCost = await l.reserve({ taskId: "d", scopes: ["tenant:acme"], amount: amount(1, 1_000_001) });
    expect(byCost).toMatchObject({ ok: false, reason: "exceeded", dimension: "costMicroUsd" });
  });

  it("prefers exceeded over contended across scopes", async () => {
    const l = ledger();
    await l.setLimit("global", { maxTokens: 100, period: "none" });
    await l.setLimit("tenant:acme:user:u", { maxTokens: 50, period: "none" });
    await l.reserve({ taskId: "a", scopes: ["global"], amount: amount(90) });
    const r = await l.reserve({ taskId: "b", scopes: ["global", "tenant:acme:user:u"], amount: amount(60) });
    expect(r).toMatchObject({ ok: false, reason: "exceeded", scope: "tenant:acme:user:u" });
  });

  it("returns the same reservation for a repeated id and refuses an id already closed", async () => {
    const l = ledger();
    const a = await l.reserve({ id: "call-1", taskId: "t", scopes: ["global"], amount: amount(10, 3) });
    const b = await l.reserve({ id: "call-1", taskId: "t", scopes: ["global"], amount: amount(10, 3) });
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    expect(b.existing).toBe(true);
    expect(b.reservation).toEqual(a.reservation);
    expect((await l.getStats("global")).reserved).toEqual(amount(10, 3));
    await l.settle("call-1", amount(5, 1));
    await expect(
      l.reserve({ id: "call-1", taskId: "t", scopes: ["global"], amount: amount(1) }),
    ).rejects.toMatchObject({
      code: "CONFLICT",
    });
  });
});

describe("BudgetLedger settle and release", () => {
  it("settle is idempotent and converts reserved into used", async () => {
    const l = ledger();
    await l.setLimit("global", { maxTokens: 1_000, period: "none" });
    const r = await l.reserve({
      taskId: "t",
      scopes: ["global", "tenant:acme:user:u"],
      amount: amount(300, 90),
    });
    if (!r.ok) throw new Error("refused");
    const first = await l.settle(r.reservation.id, amount(120, 40));
    expect(first).toEqual({ settled: true, alreadySettled: false, charged: amount(120, 40), overrun: false });
    const again = await l.settle(r.reservation.id, amount(999, 999));
    expect(again).toMatchObject({ settled: false, alreadySettled: true, charged: amount(120, 40) });
    for (const s of ["global", "tenant:acme:user:u"] as const) {
      const st = await l.getStats(s);
      expect(st.used).toEqual(amount(120, 40));
      expect(st.reserved).toEqual(amount(0, 0));
    }
    expect(await l.release(r.reservation.id)).toBe(false);
    await expect(l.settle("never-reserved", amount(1))).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  it("settles from another ledger instance (another worker) just the same", async () => {
    const prefix = `{${redis.freshPrefix("other")}}`;
    const a = new BudgetLedger({ redis: redis.client(), prefix });
    const b = new BudgetLedger({ redis: redis.client(), prefix });
    const r = await a.reserve({
      taskId: "t",
      scopes: ["global", "tenant:acme:session:s"],
      amount: amount(10, 10),
    });
    if (!r.ok) throw new Error("refused");
    expect(await b.settle(r.reservation.id, amount(4, 6))).toMatchObject({ settled: true });
    expect(await a.settle(r.reservation.id, amount(4, 6))).toMatchObject({ alreadySettled: true });
    expect(await b.getStats("tenant:acme:session:s")).toMatchObject({
      used: amount(4, 6),
      reserved: amount(0, 0),
    });
  });

  it("keeps a settled or released marker for the closer's retries, a reaped one for a late settle", async () => {
    const clock = manualClock();
    const prefix = `{${redis.freshPrefix("markers")}}`;
    const conn = redis.client();
    const l = new BudgetLedger({ redis: conn, prefix, clock, leaseMs: 1_000 });
    const reserve = async () => {
      const r = await l.reserve({ taskId: "t", scopes: ["tenant:acme"], amount: amount(10, 1) });
      if (!r.ok) throw new Error("refused");
      return r.reservation.id;
    };
    const [settled, released, reaped] = [await reserve(), await reserve(), await reserve()];
    await l.settle(settled, amount(4, 1));
    await l.release(released);
    clock.t += 1_001;
    expect((await l.reapExpired()).map((r) => r.id)).toEqual([reaped]);
    const ttl = (id: string) => conn.pttl(`${prefix}:budget:done:${id}`);
    for (const id of [settled, released]) {
      expect(await ttl(id)).toBeGreaterThan(3_500_000);
      expect(await ttl(id)).toBeLessThanOrEqual(3_600_000);
    }
    expect(await ttl(reaped)).toBeGreaterThan(6 * 86_400_000);
    // Both retentions are options.
    const short = new BudgetLedger({
      redis: conn,
      prefix,
      settledRetentionMs: 5_000,
      reapedRetentionMs: 9_000,
    });
    const r = await short.reserve({ taskId: "t", scopes: ["tenant:acme"], amount: amount(1) });
    if (!r.ok) throw new Error("refused");
    await short.settle(r.reservation.id, amount(1));
    expect(await ttl(r.reservation.id)).toBeLessThanOrEqual(5_000);
  });

  it("release drops the reservation without usage, once", async () => {
    const l = ledger();
    const r = await l.reserve({ taskId: "t", scopes: ["tenant:x"], amount: amount(50, 5) });
    if (!r.ok) throw new Error("refused");
    expect(await l.release(r.reservation.id)).toBe(true);
    expect(await l.release(r.reservation.id)).toBe(false);
    expect(await l.settle(r.reservation.id, amount(50, 5))).toEqual({
      settled: false,
      alreadySettled: false,
      charged: amount(0, 0),
      overrun: false,
    });
    const st = await l.getStats("tenant:x");
    expect(st.used).toEqual(amount(0, 0));
    expect(st.reserved).toEqual(amount(0, 0));
  });

  it("records an actual above the reservation as is and flags the overrun", async () => {
    const l = ledger();
    await l.setLimit("global", { maxTokens: 100, period: "none" });
    const r = await l.reserve({ taskId: "t", scopes: ["global"], amount: amount(80) });
    if (!r.ok) throw new Error("refused");
    expect(await l.settle(r.reservation.id, amount(130))).toMatchObject({ settled: true, overrun: true });
    const st = await l.getStats("global");
    expect(st.used.tokens).toBe(130);
    expect(st.remaining.tokens).toBe(0);
  });
});

describe("BudgetLedger periods", () => {
  it("a day limit starts over at the UTC day boundary, a reservation is charged to its own day", async () => {
    const clock = manualClock("2026-11-25T23:59:00Z");
    const l = ledger({ clock });
    await l.setLimit("tenant:acme", { maxTokens: 1_000, period: "day" });
    const a = await l.reserve({ taskId: "t", scopes: ["tenant:acme"], amount: amount(900) });
    if (!a.ok) throw new Error("refused");
    expect(await l.reserve({ taskId: "t", scopes: ["tenant:acme"], amount: amount(200) })).toMatchObject({
      reason: "contended",
      period: "2026-11-25",
    });

    clock.t = Date.parse("2026-11-26T00:00:30Z");
    await l.settle(a.reservation.id, amount(700));
    const today = await l.getStats("tenant:acme");
    expect(today).toMatchObject({ period: "2026-11-26", used: amount(0, 0), reserved: amount(0, 0) });
    expect(today.remaining.tokens).toBe(1_000);
    expect((await l.reserve({ taskId: "t", scopes: ["tenant:acme"], amount: amount(1_000) })).ok).toBe(true);

    clock.t = Date.parse("2026-11-25T12:00:00Z"); // look back at yesterday
    expect((await l.getStats("tenant:acme")).used.tokens).toBe(700);
  });

  it("a month limit rolls over on the first of the month (UTC)", async () => {
    const clock = manualClock("2026-11-30T23:00:00Z");
    const l = ledger({ clock });
    await l.setLimit("global", { maxCostMicroUsd: 1_000, period: "month" });
    const a = await l.reserve({ taskId: "t", scopes: ["global"], amount: amount(0, 1_000) });
    if (!a.ok) throw new Error("refused");
    await l.settle(a.reservation.id, amount(0, 1_000));
    expect(await l.reserve({ taskId: "t", scopes: ["global"], amount: amount(0, 1) })).toMatchObject({
      reason: "exceeded",
      period: "2026-11",
    });
    clock.t = Date.parse("2026-12-01T00:00:00Z");
    expect(await l.getStats("global")).toMatchObject({
      period: "2026-12",
      remaining: { costMicroUsd: 1_000 },
    });
    expect((await l.reserve({ taskId: "t", scopes: ["global"], amount: amount(0, 1_000) })).ok).toBe(true);
  });
});

describe("BudgetLedger leases", () => {
  it("settles an expired reservation at its reserved amount exactly once with 3 concurrent reapers", async () => {
    const clock = manualClock();
    const prefix = `{${redis.freshPrefix("reap")}}`;
    const audited: ExpiredReservation[] = [];
    const make = () =>
      new BudgetLedger({
        redis: redis.client(),
        prefix,
        clock,
        leaseMs: 1_000,
        onLeaseExpired: (r) => void audited.push(r),
      });
    const [owner, ...reapers] = [make(), make(), make(), make()];
    if (!owner) throw new Error("no ledger");
    await owner.setLimit("global", { maxTokens: 10_000, period: "none" });
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await owner.reserve({
        taskId: `t${i}`,
        scopes: ["global", "tenant:acme:user:u"],
        amount: amount(100, 10),
      });
      if (!r.ok) throw new Error("refused");
      ids.push(r.reservation.id);
    }
    const survivor = await owner.reserve({ taskId: "alive", scopes: ["global"], amount: amount(5) });
    if (!survivor.ok) throw new Error("refused");

    clock.t += 900;
    expect(await owner.extendLease(survivor.reservation.id, 5_000)).toBe(true);
    expect(await owner.reapExpired()).toEqual([]); // nothing has run out yet

    clock.t += 200;
    expect(await owner.extendLease(ids[0] ?? "", 5_000)).toBe(false); // ran out: belongs to the reaper now
    const results = await Promise.all(
      reapers.map((r) => r.reapExpired(7)).concat(reapers.map((r) => r.reapExpired())),
    );
    const reaped = results.flat();
    expect(reaped.map((r) => r.id).sort()).toEqual([...ids].sort());
    expect(audited.map((r) => r.id).sort()).toEqual([...ids].sort());
    expect(reaped[0]).toMatchObject({
      amount: amount(100, 10),
      scopes: ["global", "tenant:acme:user:u"],
      periods: ["none", "none"],
    });

    const g = await owner.getStats("global");
    expect(g.used).toEqual(amount(2_000, 200));
    expect(g.reserved).toEqual(amount(5, 0));
    expect((await owner.getStats("tenant:acme:user:u")).used).toEqual(amount(2_000, 200));

    // A worker that comes back after being reaped (it was cut off from Redis, not dead) settles
    // its real usage once: the reaped charge is corrected to what the provider billed, never twice.
    expect(await owner.settle(ids[1] ?? "", amount(40, 4))).toMatchObject({
      settled: true,
      charged: amount(40, 4),
    });
    expect((await owner.getStats("global")).used).toEqual(amount(2_000 - 60, 200 - 6));
    expect((await owner.getStats("tenant:acme:user:u")).used).toEqual(amount(2_000 - 60, 200 - 6));
    expect(await owner.settle(ids[1] ?? "", amount(40, 4))).toMatchObject({
      settled: false,
      alreadySettled: true,
      charged: amount(40, 4),
    });
    expect(await make().settle(ids[1] ?? "", amount(90, 9))).toMatchObject({
      settled: false,
      alreadySettled: true,
    });
    expect(await owner.settle(survivor.reservation.id, amount(5))).toMatchObject({ settled: true });
  });

  it("reports an audit hook failure after settling everything", async () => {
    const clock = manualClock();
    const l = ledger({
      clock,
      leaseMs: 10,
      onLeaseExpired: () => {
        throw new Error("audit down");
      },
    });
    await l.reserve({ taskId: "t", scopes: ["global"], amount: amount(3) });
    clock.t += 11;
    const err: unknown = await l.reapExpired().catch((e: unknown) => e);
    expect(AgentryError.isInstance(err) && err.code).toBe("AUDIT_FAILED");
    expect((await l.getStats("global")).used.tokens).toBe(3);
    expect(await l.reapExpired()).toEqual([]);
  });
});

describe("BudgetLedger stats and availability", () => {
  it("reports used, reserved and remaining, and what still fits all scopes", async () => {
    const l = ledger();
    await l.setLimit("global", { maxTokens: 10_000, maxCostMicroUsd: 50_000, period: "none" });
    await l.setLimit("tenant:acme", { maxTokens: 2_000, period: "none" });
    const a = await l.reserve({
      taskId: "t",
      scopes: ["global", "tenant:acme"],
      amount: amount(1_000, 4_000),
    });
    const b = await l.reserve({ taskId: "t", scopes: ["global", "tenant:acme"], amount: amount(300, 1_000) });
    if (!a.ok || !b.ok) throw new Error("refused");
    await l.settle(a.reservation.id, amount(600, 2_500));

    expect(await l.getStats("global")).toEqual({
      scope: "global",
      limit: { maxTokens: 10_000, maxCostMicroUsd: 50_000, period: "none" },
      used: amount(600, 2_500),
      reserved: amount(300, 1_000),
      remaining: { tokens: 9_100, costMicroUsd: 46_500 },
      period: "none",
    });
    expect(await l.getStats("tenant:acme")).toMatchObject({
      remaining: { tokens: 1_100, costMicroUsd: null },
    });
    expect(await l.getStats("tenant:acme:user:nobody")).toEqual({
      scope: "tenant:acme:user:nobody",
      limit: null,
      used: amount(0, 0),
      reserved: amount(0, 0),
      remaining: { tokens: null, costMicroUsd: null },
      period: "none",
    });
    expect(await l.available(["global", "tenant:acme", "tenant:acme:user:nobody"])).toEqual({
      tokens: 1_100,
      costMicroUsd: 46_500,
      limitingScope: "tenant:acme",
    });
    expect(await l.available(["tenant:acme:user:nobody"])).toEqual({ tokens: null, costMicroUsd: null });
  });
});

describe("budgetError", () => {
  it("maps exceeded to BUDGET_EXCEEDED with the scope and figures", async () => {
    const l = ledger();
    await l.setLimit("tenant:acme", { maxTokens: 10_000, period: "none" });
    const a = await l.reserve({ taskId: "t", scopes: ["tenant:acme"], amount: amount(9_500) });
    if (!a.ok) throw new Error("refused");
    await l.settle(a.reservation.id, amount(9_500));
    const r = await l.reserve({ taskId: "t", scopes: ["global", "tenant:acme"], amount: amount(1_200) });
    if (r.ok) throw new Error("should be refused");
    const err = budgetError(r);
    expect(err.code).toBe("BUDGET_EXCEEDED");
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(
      "Budget exceeded for tenant:acme: 9,500 used + 1,200 requested would exceed 10,000 tokens",
    );
    expect(err.details).toMatchObject({ scope: "tenant:acme", used: amount(9_500) });
  });

  it("maps contended to a retryable BUDGET_CONTENDED with retryAfterMs, cost shown in USD", async () => {
    const l = ledger({ contendedRetryMs: 400, clock: manualClock() });
    await l.setLimit("tenant:acme:user:u", { maxCostMicroUsd: 2_000_000, period: "day" });
    await l.reserve({ taskId: "t", scopes: ["tenant:acme:user:u"], amount: amount(0, 1_500_000) });
    const r = await l.reserve({ taskId: "t", scopes: ["tenant:acme:user:u"], amount: amount(0, 750_000) });
    if (r.ok) throw new Error("should be refused");
    const err = budgetError(r);
    expect(err).toMatchObject({ code: "BUDGET_CONTENDED", retryable: true, retryAfterMs: 400 });
    expect(err.message).toBe(
      "Budget busy for tenant:acme:user:u: $0.00 used + $1.50 reserved by calls in flight + $0.75 requested would exceed $2.00 (period 2026-11-25); retry once they settle",
    );
  });
});
