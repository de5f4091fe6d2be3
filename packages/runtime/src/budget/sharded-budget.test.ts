import { shardOfSession, shardPrefixes } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { AllowanceLedger } from "./allowance.js";
import { BudgetLedger } from "./ledger.js";
import { budgetScopeKind, type BudgetScope } from "./scope.js";
import { ShardedBudget, SplitCallLedger, sessionOfScope } from "./sharded-budget.js";

const redis = useTestRedis("sharded-budget");
const amount = (tokens: number, costMicroUsd = 0) => ({ tokens, costMicroUsd });
const SESSION: BudgetScope = "tenant:acme:session:s-1";
const SCOPES: BudgetScope[] = ["global", "tenant:acme", "tenant:acme:user:u", SESSION];
const isLocal = (s: BudgetScope) => budgetScopeKind(s) === "session";

function setUp() {
  const base = `{${redis.freshPrefix("split")}}`;
  const [, shardPrefix] = shardPrefixes(base, 2) as [string, string];
  const main = new BudgetLedger({ redis: redis.client(), prefix: base });
  const local = new BudgetLedger({ redis: redis.client(), prefix: shardPrefix });
  return {
    main,
    local,
    split: new SplitCallLedger({ main, localFor: (s) => (isLocal(s) ? local : undefined) }),
  };
}

describe("SplitCallLedger", () => {
  it("holds a session's part on the shard's ledger and the rest on the global one, and settles both", async () => {
    const { main, local, split } = setUp();
    const r = await split.reserve({ taskId: "t1", scopes: SCOPES, amount: amount(100, 10) });
    if (!r.ok) throw new Error("refused");
    expect(r.reservation.scopes).toEqual(SCOPES);
    expect((await local.getStats(SESSION)).reserved).toEqual(amount(100, 10));
    expect((await main.getStats("global")).reserved).toEqual(amount(100, 10));
    expect(await split.extendLease(r.reservation.id, 60_000)).toBe(true);
    expect(await split.settle(r.reservation.id, amount(40, 4))).toMatchObject({
      settled: true,
      charged: amount(40, 4),
    });
    for (const [ledger, scope] of [
      [local, SESSION],
      [main, "global"],
      [main, "tenant:acme:user:u"],
    ] as const) {
      expect(await ledger.getStats(scope)).toMatchObject({ used: amount(40, 4), reserved: amount(0, 0) });
    }
    // The global slot never sees the session scope, the shard never sees the others.
    expect(await main.listScopes()).not.toContain(SESSION);
    expect(await local.listScopes()).not.toContain("global");
    // A repeated settle answers as the ledger does.
    expect(await split.settle(r.reservation.id, amount(40, 4))).toMatchObject({ alreadySettled: true });
    const released = await split.reserve({ taskId: "t2", scopes: SCOPES, amount: amount(5) });
    if (!released.ok) throw new Error("refused");
    expect(await split.release(released.reservation.id)).toBe(true);
    expect((await local.getStats(SESSION)).reserved).toEqual(amount(0, 0));
    expect((await main.getStats("tenant:acme")).reserved).toEqual(amount(0, 0));
  });

  it("holds nothing when either side refuses: a session over its limit, or a tenant over its own", async () => {
    const { main, local, split } = setUp();
    await local.setLimit(SESSION, { maxTokens: 150, period: "none" });
    await main.setLimit("tenant:acme", { maxTokens: 1_000, period: "none" });
    const ok = await split.reserve({ taskId: "t1", scopes: SCOPES, amount: amount(100) });
    expect(ok.ok).toBe(true);
    // The session (local part) refuses: the global side is never touched.
    const bySession = await split.reserve({ taskId: "t2", scopes: SCOPES, amount: amount(100) });
    expect(bySession).toMatchObject({ ok: false, scope: SESSION });
    expect((await main.getStats("global")).reserved).toEqual(amount(100));
    // The tenant (main part) refuses: the session part just taken is given back.
    const other: BudgetScope = "tenant:acme:session:s-2";
    const byTenant = await split.reserve({
      taskId: "t3",
      scopes: ["global", "tenant:acme", other],
      amount: amount(950),
    });
    expect(byTenant).toMatchObject({ ok: false, scope: "tenant:acme" });
    expect((await local.getStats(other)).reserved).toEqual(amount(0));
    expect((await main.getStats("global")).reserved).toEqual(amount(100));
    // What fits is the least room of any scope, wherever it lives.
    expect(await split.available(SCOPES)).toEqual({ tokens: 50, costMicroUsd: null, limitingScope: SESSION });
  });

  it("splits through allowances too: each side draws from its own ledger", async () => {
    const { main, local } = setUp();
    const mainAllowances = new AllowanceLedger({ ledger: main, callsPerDraw: 4, idleMs: 60_000 });
    const localAllowances = new AllowanceLedger({ ledger: local, callsPerDraw: 4, idleMs: 60_000 });
    const split = new SplitCallLedger({
      main: mainAllowances,
      localFor: (s) => (isLocal(s) ? localAllowances : undefined),
    });
    for (let i = 0; i < 3; i++) {
      const r = await split.reserve({ taskId: `t${i}`, scopes: SCOPES, amount: amount(100) });
      if (!r.ok) throw new Error("refused");
      await split.settle(r.reservation.id, amount(30));
    }
    await Promise.all([mainAllowances.close(), localAllowances.close()]);
    expect(await local.getStats(SESSION)).toMatchObject({ used: amount(90), reserved: amount(0) });
    expect(await main.getStats("global")).toMatchObject({ used: amount(90), reserved: amount(0) });
    expect(await main.listScopes()).not.toContain(SESSION);
  });
});

describe("SplitCallLedger over every shard", () => {
  it("holds a session's part on its session's shard whatever shard the call runs on, and refuses a call whose sessions are on two shards", async () => {
    const base = `{${redis.freshPrefix("route")}}`;
    const global = new BudgetLedger({ redis: redis.client(), prefix: base });
    const book = new ShardedBudget(
      global,
      shardPrefixes(base, 3).map((p) => new BudgetLedger({ redis: redis.client(), prefix: p })),
    );
    const split = new SplitCallLedger({
      main: global,
      localFor: (s) => (book.shardOf(s) === undefined ? undefined : book.ledgerFor(s)),
    });
    // A limit set where the CLI sets it holds for the call.
    await book.setLimit(SESSION, { maxTokens: 100, period: "none" });
    expect(await split.reserve({ taskId: "t1", scopes: SCOPES, amount: amount(150) })).toMatchObject({
      ok: false,
      scope: SESSION,
    });
    const r = await split.reserve({ taskId: "t2", scopes: SCOPES, amount: amount(60) });
    if (!r.ok) throw new Error("refused");
    await split.settle(r.reservation.id, amount(60));
    expect((await book.getStats(SESSION)).used).toEqual(amount(60));
    const twoShards = [1, 2, 3, 4, 5, 6].map((i) => `tenant:acme:session:x-${i}` as BudgetScope);
    const apart = twoShards.filter((s) => book.shardOf(s) !== book.shardOf(twoShards[0] as BudgetScope));
    const err = await split
      .reserve({
        taskId: "t3",
        scopes: [twoShards[0] as BudgetScope, apart[0] as BudgetScope],
        amount: amount(1),
      })
      .catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe("INVALID_INPUT");
  });
});

describe("ShardedBudget", () => {
  it("keeps a session's limit and figures on its session's shard and lists every scope once", async () => {
    const base = `{${redis.freshPrefix("book")}}`;
    const prefixes = shardPrefixes(base, 3);
    const global = new BudgetLedger({ redis: redis.client(), prefix: base });
    const shards = prefixes.map((p) => new BudgetLedger({ redis: redis.client(), prefix: p }));
    const book = new ShardedBudget(global, shards);
    const home = shards[shardOfSession("acme", "s-1", 3)] as BudgetLedger;
    expect(sessionOfScope(SESSION)).toEqual({ tenant: "acme", sessionId: "s-1" });
    expect(sessionOfScope("tenant:acme:user:u")).toBeUndefined();
    expect(book.ledgerFor(SESSION)).toBe(home);
    expect(book.ledgerFor("tenant:acme:user:u")).toBe(global);
    await book.setLimit(SESSION, { maxTokens: 500, period: "day" });
    await book.setLimit("tenant:acme", { maxTokens: 9_000, period: "none" });
    expect(await home.getLimit(SESSION)).toEqual({ maxTokens: 500, period: "day" });
    expect(await global.getLimit(SESSION)).toBeNull();
    expect((await book.getStats(SESSION)).limit).toEqual({ maxTokens: 500, period: "day" });
    // A session scope left on the global slot from before sharding is not what is enforced: not listed.
    await global.setLimit("tenant:acme:session:stale", { maxTokens: 1, period: "none" });
    expect(await book.listScopes()).toEqual(["tenant:acme", SESSION]);
    await book.removeLimit(SESSION);
    expect(await home.getLimit(SESSION)).toBeNull();
    // One shard: every scope on the one ledger.
    const single = new ShardedBudget(global, [global]);
    expect(single.ledgerFor(SESSION)).toBe(global);
  });
});
