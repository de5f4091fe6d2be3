import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { AllowanceLedger } from "./allowance.js";
import { BudgetLedger } from "./ledger.js";
import { BUDGET_SCOPE_KINDS, type BudgetScope } from "./scope.js";

const redis = useTestRedis("allowance");
const amount = (tokens: number, costMicroUsd = 0) => ({ tokens, costMicroUsd });
const SCOPES: BudgetScope[] = ["global", "tenant:acme", "tenant:acme:user:u", "tenant:acme:session:s"];

function setUp(callsPerDraw = 4) {
  const prefix = `{${redis.freshPrefix("allowance")}}`;
  const ledger = new BudgetLedger({ redis: redis.client(), prefix });
  // Idle and age far out of reach: a test returns allowances itself, by close().
  const allowances = new AllowanceLedger({ ledger, callsPerDraw, idleMs: 60_000, maxAgeMs: 60_000 });
  /** Ledger reservations made so far (each closed one leaves a done marker, each open one a hash). */
  const reservations = async () =>
    (await redis.client().keys(`${prefix}:budget:done:*`)).length +
    (await redis.client().keys(`${prefix}:budget:res:*`)).length;
  return { prefix, ledger, allowances, reservations };
}

describe("AllowanceLedger", () => {
  it("serves calls from one draw per scope, and returns it settled at exactly what they used", async () => {
    const { ledger, allowances, reservations } = setUp(4);
    let used = 0;
    for (let i = 0; i < 8; i++) {
      const r = await allowances.reserve({ taskId: `t${i}`, scopes: SCOPES, amount: amount(100, 10) });
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      const actual = 30 + (i % 3);
      const settled = await allowances.settle(r.reservation.id, amount(actual, 4));
      expect(settled).toMatchObject({ settled: true, overrun: false, charged: amount(actual, 4) });
      used += actual;
    }
    // The first draw held 400 per scope: 8 calls of 100 reserved, about 30 used each, fit in it.
    expect(await reservations()).toBe(SCOPES.length);
    const global = await ledger.getStats("global");
    expect(global.reserved).toEqual(amount(400, 40));
    expect(global.used).toEqual(amount(0, 0));
    expect(allowances.openAllowances).toBe(SCOPES.length);
    // What the metrics show: one allowance per kind, holding the draw, with the calls' usage.
    expect(allowances.holdings()).toEqual(
      BUDGET_SCOPE_KINDS.map((kind) => ({
        kind,
        open: 1,
        granted: amount(400, 40),
        used: amount(used, 32),
      })),
    );

    await allowances.close();
    expect(allowances.openAllowances).toBe(0);
    expect(allowances.holdings()).toEqual([]);
    for (const scope of SCOPES) {
      const st = await ledger.getStats(scope);
      expect(st.reserved).toEqual(amount(0, 0));
      expect(st.used).toEqual(amount(used, 32));
    }
  });

  it("draws again when a call does not fit what is left, and returns the old allowance once its calls are done", async () => {
    const { ledger, allowances, reservations } = setUp(2);
    const first = await allowances.reserve({ taskId: "a", scopes: ["global"], amount: amount(100) });
    const second = await allowances.reserve({ taskId: "b", scopes: ["global"], amount: amount(100) });
    expect(first.ok && second.ok).toBe(true);
    expect(await reservations()).toBe(1);
    // No room left in the first allowance: a second draw, the first retired.
    const third = await allowances.reserve({ taskId: "c", scopes: ["global"], amount: amount(100) });
    expect(third.ok).toBe(true);
    expect(await reservations()).toBe(2);
    if (!first.ok || !second.ok || !third.ok) return;
    await allowances.settle(first.reservation.id, amount(70));
    await allowances.release(second.reservation.id);
    // The retired allowance goes back at its next beat, now that no call holds it.
    await allowances.returnIdle();
    expect(allowances.openAllowances).toBe(1);
    expect((await ledger.getStats("global")).used).toEqual(amount(70));
    await allowances.settle(third.reservation.id, amount(30));
    await allowances.close();
    expect(await ledger.getStats("global")).toMatchObject({ used: amount(100), reserved: amount(0) });
  });

  it("refuses as the ledger would, holding nothing, and never lets the calls past the limit", async () => {
    const { ledger, allowances } = setUp(4);
    await ledger.setLimit("tenant:acme", { maxTokens: 1_000, period: "none" });
    const exceeded = await allowances.reserve({ taskId: "big", scopes: SCOPES, amount: amount(1_001) });
    expect(exceeded).toMatchObject({
      ok: false,
      reason: "exceeded",
      scope: "tenant:acme",
      dimension: "tokens",
    });
    // Calls of 300: the first draw (1 200) does not fit the limit, so it draws just 300 each time.
    const granted: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await allowances.reserve({ taskId: `c${i}`, scopes: SCOPES, amount: amount(300) });
      if (r.ok) granted.push(r.reservation.id);
      else expect(r).toMatchObject({ ok: false, reason: "contended", scope: "tenant:acme" });
    }
    expect(granted).toHaveLength(3);
    const st = await ledger.getStats("tenant:acme");
    expect(st.used.tokens + st.reserved.tokens).toBeLessThanOrEqual(1_000);
    for (const id of granted) await allowances.settle(id, amount(300));
    await allowances.close();
    expect(await ledger.getStats("tenant:acme")).toMatchObject({ used: amount(900), reserved: amount(0) });
    // What the refused calls drew on the other scopes went back unused: nothing charged twice.
    expect((await ledger.getStats("global")).used).toEqual(amount(900));
  });

  it("returns its own idle allowance when that is what stands between a call and the limit", async () => {
    const { ledger, allowances } = setUp(4);
    await ledger.setLimit("global", { maxTokens: 1_000, period: "none" });
    const small = await allowances.reserve({ taskId: "a", scopes: ["global"], amount: amount(200) });
    expect(small.ok).toBe(true);
    if (!small.ok) return;
    await allowances.settle(small.reservation.id, amount(200));
    // 800 drawn, 200 used: a call of 700 finds 600 left; the ledger has 200 free beside this
    // process's own allowance, which it returns (settled at 200) to make room.
    const big = await allowances.reserve({ taskId: "b", scopes: ["global"], amount: amount(700) });
    expect(big).toMatchObject({ ok: true });
    expect(await ledger.getStats("global")).toMatchObject({ used: amount(200), reserved: amount(700) });
    if (big.ok) await allowances.settle(big.reservation.id, amount(650));
    await allowances.close();
    expect(await ledger.getStats("global")).toMatchObject({ used: amount(850), reserved: amount(0) });
  });

  it("answers a repeated settle or release as the ledger does, and a call keeps its allowances leased", async () => {
    const { ledger, allowances } = setUp(4);
    const r = await allowances.reserve({ taskId: "a", scopes: SCOPES, amount: amount(100, 5) });
    if (!r.ok) throw new Error("refused");
    expect(await allowances.extendLease(r.reservation.id, 60_000)).toBe(true);
    await allowances.settle(r.reservation.id, amount(80, 4));
    expect(await allowances.settle(r.reservation.id, amount(80, 4))).toMatchObject({
      settled: false,
      alreadySettled: true,
      charged: amount(80, 4),
    });
    expect(await allowances.release(r.reservation.id)).toBe(false);
    expect(await allowances.extendLease(r.reservation.id)).toBe(false);
    await expect(allowances.settle("res_unknown", amount(1))).rejects.toMatchObject({ code: "NOT_FOUND" });
    const released = await allowances.reserve({ taskId: "b", scopes: SCOPES, amount: amount(100, 5) });
    if (!released.ok) throw new Error("refused");
    expect(await allowances.release(released.reservation.id)).toBe(true);
    expect(await allowances.settle(released.reservation.id, amount(1))).toMatchObject({
      settled: false,
      alreadySettled: false,
    });
    await allowances.close();
    expect((await ledger.getStats("global")).used).toEqual(amount(80, 4));
    await expect(
      allowances.reserve({ taskId: "c", scopes: SCOPES, amount: amount(1) }),
    ).rejects.toMatchObject({
      code: "CONFLICT",
    });
  });

  it("holds nothing when a draw fails: the error reaches the caller, and what was drawn goes back unused", async () => {
    const { ledger, allowances } = setUp(4);
    // The second scope is not a scope: its draw throws while the first one's succeeds.
    await expect(
      allowances.reserve({
        taskId: "a",
        scopes: ["global", "not a scope" as BudgetScope],
        amount: amount(100),
      }),
    ).rejects.toMatchObject({ code: "INVALID_INPUT" });
    expect((await ledger.getStats("global")).reserved).toEqual(amount(400));
    await allowances.close(1_000);
    expect(allowances.openAllowances).toBe(0);
    expect(await ledger.getStats("global")).toMatchObject({ used: amount(0), reserved: amount(0) });
  });

  it("refuses a bad amount or a scope listed twice with INVALID_INPUT, before anything is drawn", async () => {
    const { allowances, reservations } = setUp(4);
    for (const bad of [amount(-1), amount(1.5), { tokens: 1 } as never])
      await expect(
        allowances.reserve({ taskId: "a", scopes: ["global"], amount: bad }),
      ).rejects.toMatchObject({
        code: "INVALID_INPUT",
      });
    await expect(
      allowances.reserve({ taskId: "a", scopes: ["global", "global"], amount: amount(1) }),
    ).rejects.toMatchObject({ code: "INVALID_INPUT" });
    expect(await reservations()).toBe(0);
    const r = await allowances.reserve({ taskId: "a", scopes: ["global"], amount: amount(10) });
    if (!r.ok) throw new Error("refused");
    await expect(allowances.settle(r.reservation.id, amount(Number.NaN))).rejects.toMatchObject({
      code: "INVALID_INPUT",
    });
    // The call is still open: a good settle goes through.
    expect(await allowances.settle(r.reservation.id, amount(5))).toMatchObject({ settled: true });
    await allowances.close();
  });

  it("returns an idle allowance on its own beat", async () => {
    const prefix = `{${redis.freshPrefix("allowance-idle")}}`;
    const ledger = new BudgetLedger({ redis: redis.client(), prefix });
    const allowances = new AllowanceLedger({ ledger, callsPerDraw: 4, idleMs: 100 });
    const r = await allowances.reserve({ taskId: "a", scopes: ["global"], amount: amount(100) });
    if (!r.ok) throw new Error("refused");
    await allowances.settle(r.reservation.id, amount(60));
    await expect.poll(() => allowances.openAllowances, { timeout: 10_000 }).toBe(0);
    expect(await ledger.getStats("global")).toMatchObject({ used: amount(60), reserved: amount(0) });
    await allowances.close();
  });
});
