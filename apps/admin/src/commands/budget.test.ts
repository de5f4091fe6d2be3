import { describe, expect, it } from "vitest";
import { shardOfSession, shardPrefixes } from "@agentry/core";
import { BudgetLedger, type BudgetStats } from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { runAgentry } from "../testing/run-agentry.js";

const redis = useTestRedis("admin-budget");

function setup() {
  const prefix = redis.freshPrefix();
  const env = { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix };
  return { env, ledger: new BudgetLedger({ redis: redis.client(), prefix }) };
}

describe("agentry budget", () => {
  it("with queue shards, sets and shows a session's limit on its session's shard, other scopes on the global slot", async () => {
    const base = `{${redis.freshPrefix()}}`;
    const env = { REDIS_URL: redis.url, AGENTRY_PREFIX: base, AGENTRY_SHARDS: "3" };
    const scope = "tenant:acme:session:s-42";
    const home = new BudgetLedger({
      redis: redis.client(),
      prefix: shardPrefixes(base, 3)[shardOfSession("acme", "s-42", 3)] as string,
    });
    const global = new BudgetLedger({ redis: redis.client(), prefix: base });
    expect((await runAgentry(["budget", "set", "--scope", scope, "--max-tokens", "700"], env)).code).toBe(0);
    expect(
      (await runAgentry(["budget", "set", "--scope", "tenant:acme", "--max-tokens", "9000"], env)).code,
    ).toBe(0);
    expect(await home.getLimit(scope)).toEqual({ maxTokens: 700, period: "none" });
    expect(await global.getLimit(scope)).toBeNull();
    expect(await global.getLimit("tenant:acme")).toEqual({ maxTokens: 9000, period: "none" });
    const show = await runAgentry(["budget", "show", "--json"], env);
    expect((JSON.parse(show.stdout) as BudgetStats[]).map((s) => [s.scope, s.limit?.maxTokens])).toEqual([
      ["tenant:acme", 9000],
      [scope, 700],
    ]);
  });

  it("sets a cost limit from dollars to exact micro-USD and shows it back", async () => {
    const { env, ledger } = setup();
    const set = await runAgentry(
      ["budget", "set", "--scope", "tenant:acme", "--max-cost", "0.25", "--period", "day", "--json"],
      env,
    );
    expect(set.code).toBe(0);
    expect((JSON.parse(set.stdout) as BudgetStats).limit).toEqual({
      maxCostMicroUsd: 250_000,
      period: "day",
    });
    expect(await ledger.getLimit("tenant:acme")).toEqual({ maxCostMicroUsd: 250_000, period: "day" });

    const show = await runAgentry(["budget", "show", "--scope", "tenant:acme", "--json"], env);
    expect(show.code).toBe(0);
    const [stats] = JSON.parse(show.stdout) as BudgetStats[];
    expect(stats).toMatchObject({ scope: "tenant:acme", remaining: { costMicroUsd: 250_000, tokens: null } });

    const table = await runAgentry(["budget", "show"], env);
    expect(table.stdout).toMatch(/^SCOPE\s+PERIOD\s+MAX TOKENS/);
    expect(table.stdout).toMatch(
      /tenant:acme\s+day \(\d{4}-\d{2}-\d{2}\)\s+-\s+0\s+0\s+-\s+\$0\.250000\s+\$0\.000000\s+\$0\.000000\s+\$0\.250000/,
    );
  });

  it("keeps values not given, and shows used, reserved and remaining of every scope", async () => {
    const { env, ledger } = setup();
    expect((await runAgentry(["budget", "set", "--scope", "global", "--max-tokens", "1000"], env)).code).toBe(
      0,
    );
    expect((await runAgentry(["budget", "set", "--scope", "global", "--max-cost", "19.99"], env)).code).toBe(
      0,
    );
    expect(await ledger.getLimit("global")).toEqual({
      maxTokens: 1000,
      maxCostMicroUsd: 19_990_000,
      period: "none",
    });

    const r = await ledger.reserve({
      scopes: ["global", "tenant:acme:user:u1"],
      amount: { tokens: 300, costMicroUsd: 1_500 },
      taskId: "t1",
    });
    if (!r.ok) throw new Error("reserve refused");
    await ledger.settle(r.reservation.id, { tokens: 120, costMicroUsd: 700 });
    const r2 = await ledger.reserve({
      scopes: ["global"],
      amount: { tokens: 50, costMicroUsd: 10 },
      taskId: "t2",
    });
    expect(r2.ok).toBe(true);

    const show = await runAgentry(["budget", "show", "--json"], env);
    const all = JSON.parse(show.stdout) as BudgetStats[];
    expect(all.map((s) => s.scope)).toEqual(expect.arrayContaining(["global", "tenant:acme:user:u1"]));
    expect(all.find((s) => s.scope === "global")).toMatchObject({
      used: { tokens: 120, costMicroUsd: 700 },
      reserved: { tokens: 50, costMicroUsd: 10 },
      remaining: { tokens: 830, costMicroUsd: 19_989_290 },
    });
    const table = await runAgentry(["budget", "show"], env);
    expect(table.stdout).toMatch(
      /global\s+none\s+1000\s+120\s+50\s+830\s+\$19\.990000\s+\$0\.000700\s+\$0\.000010\s+\$19\.989290/,
    );
    expect(table.stdout).toMatch(/tenant:acme:user:u1\s+no limit/);
  });

  it("refuses bad scopes, amounts and periods as usage errors without touching Redis", async () => {
    const { env, ledger } = setup();
    for (const args of [
      ["--scope", "team:x", "--max-tokens", "5"],
      ["--scope", "global", "--max-cost", "0.0000001"],
      ["--scope", "global", "--max-cost", "-1"],
      ["--scope", "global", "--max-cost", "1e3"],
      ["--scope", "global", "--max-tokens", "1.5"],
      ["--scope", "global", "--period", "week", "--max-tokens", "5"],
      ["--scope", "global"],
      ["--max-tokens", "5"],
    ]) {
      const run = await runAgentry(["budget", "set", ...args], env);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr.trimEnd().split("\n"), args.join(" ")).toHaveLength(1);
    }
    expect(await ledger.listScopes()).toEqual([]);
    for (const [cmd, old, replacement] of [
      ["set", "user:u1", "tenant:<tenant>:user:u1"],
      ["set", "session:s1", "tenant:<tenant>:session:s1"],
      ["show", "user:u1", "tenant:<tenant>:user:u1"],
    ] as const) {
      const run = await runAgentry(
        ["budget", cmd, "--scope", old, ...(cmd === "set" ? ["--max-tokens", "5"] : [])],
        env,
      );
      expect(run.code, `${cmd} ${old}`).toBe(2);
      expect(run.stderr).toContain(replacement);
    }
    // A tenant id with ':' would make the scope ambiguous: refused, not guessed.
    expect(
      (await runAgentry(["budget", "set", "--scope", "tenant:a:b:user:c", "--max-tokens", "5"], env)).code,
    ).toBe(2);
    expect(await ledger.listScopes()).toEqual([]);
    const periodOnly = await runAgentry(["budget", "set", "--scope", "global", "--period", "day"], env);
    expect(periodOnly.code).toBe(2);
    expect(periodOnly.stderr).toMatch(/has no limit yet/);
  });
});
