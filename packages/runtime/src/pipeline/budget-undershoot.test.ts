import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startFakeAnthropic, useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { BudgetLedger } from "../budget/ledger.js";
import { budgetScopeKind, type BudgetScope, type BudgetScopeKind } from "../budget/scope.js";
import type { BudgetLimit, BudgetStats } from "../budget/types.js";

const redis = useTestRedis("budget-undershoot");
const CHILD = fileURLToPath(new URL("./budget-undershoot.child.ts", import.meta.url));
const PACKAGE_DIR = fileURLToPath(new URL("../..", import.meta.url));

const PROCESSES = 3;
const LOOPS = 4;
const TASKS_PER_LOOP = 6;

/** Tight budgets on every scope kind: demand is several times what global allows. */
const LIMITS: [BudgetScope, BudgetLimit][] = [
  ["global", { maxTokens: 60_000, maxCostMicroUsd: 220_000, period: "none" }],
  ...[0, 1].map((i): [BudgetScope, BudgetLimit] => [`tenant:t${i}`, { maxTokens: 34_000, period: "none" }]),
  ...[0, 1, 2, 3].map((i): [BudgetScope, BudgetLimit] => [
    `tenant:t${i % 2}:user:u${i}`,
    { maxTokens: 20_000, maxCostMicroUsd: 70_000, period: "none" },
  ]),
  ...[0, 1, 2, 3, 4, 5].map((i): [BudgetScope, BudgetLimit] => [
    `tenant:t${i % 2}:session:s${i}`,
    { maxTokens: 12_000, period: "none" },
  ]),
];

interface UndershootReport {
  tasks: number;
  completed: number;
  exceeded: number;
  contended: number;
  calls: number;
  undershotEstimate: number;
  reservedFromEstimate: number;
  reservedFromCount: number;
  overruns: number;
}

function runChild(args: string[]): Promise<UndershootReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--conditions=@agentry/source", "--import", "tsx", CHILD, ...args],
      {
        cwd: PACKAGE_DIR,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`undershoot child exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out.trim().split("\n").pop() ?? "") as UndershootReport);
      } catch (e) {
        reject(new Error(`bad child output: ${out} ${err}`, { cause: e }));
      }
    });
  });
}

/** Every way a snapshot breaks a limit, as readable strings (empty when sound). */
function violations(s: BudgetStats): string[] {
  const out: string[] = [];
  const check = (max: number | undefined, used: number, reserved: number, unit: string) => {
    if (max === undefined) return;
    if (used > max) out.push(`${s.scope}: spent ${used} > ${max} ${unit}`);
    if (used + reserved > max) out.push(`${s.scope}: used ${used} + reserved ${reserved} > ${max} ${unit}`);
  };
  check(s.limit?.maxTokens, s.used.tokens, s.reserved.tokens, "tokens");
  check(s.limit?.maxCostMicroUsd, s.used.costMicroUsd, s.reserved.costMicroUsd, "micro-USD");
  return out;
}

describe("budgets against a provider that counts more than the estimate", () => {
  it(
    `${PROCESSES} worker processes on one tight budget never pass a limit, and the ledger holds what the provider billed`,
    { timeout: 180_000 },
    async () => {
      // Code and CJK text bill about 1.5–2x the estimate at this inflation (the estimate alone undershoots).
      const fake = await startFakeAnthropic({ tokenInflation: 4 });
      try {
        const prefix = `{${redis.freshPrefix("undershoot")}}`;
        const ledger = new BudgetLedger({ redis: redis.client(), prefix });
        for (const [scope, limit] of LIMITS) await ledger.setLimit(scope, limit);
        const scopes = LIMITS.map(([s]) => s);

        let running = true;
        const seen: string[] = [];
        let samples = 0;
        const sampler = (async () => {
          while (running) {
            for (const s of scopes) seen.push(...violations(await ledger.getStats(s)));
            samples++;
          }
        })();
        const reports = await Promise.all(
          Array.from({ length: PROCESSES }, (_, i) =>
            runChild([
              redis.url,
              prefix,
              fake.url,
              String(1_000 + i),
              String(LOOPS),
              String(TASKS_PER_LOOP),
              scopes.join(","),
            ]),
          ),
        ).finally(() => {
          running = false;
        });
        await sampler;

        const total = (k: keyof UndershootReport) => reports.reduce((n, r) => n + r[k], 0);
        expect(seen).toEqual([]);
        expect(samples).toBeGreaterThan(1);
        // The premise held: the provider billed more prompt than estimated on most calls.
        expect(total("calls")).toBeGreaterThan(0);
        expect(total("undershotEstimate")).toBeGreaterThan(total("calls") / 2);
        // The budget really ran out, and both paths were taken: cheap far from the limits, exact near them.
        expect(total("exceeded")).toBeGreaterThan(0);
        expect(total("reservedFromEstimate")).toBeGreaterThan(0);
        expect(total("reservedFromCount")).toBeGreaterThan(0);
        expect(total("overruns")).toBe(0);

        const billed = fake.billed();
        expect(billed.calls).toBe(total("calls"));
        expect(billed.countCalls).toBeGreaterThanOrEqual(total("reservedFromCount"));
        const stats = await Promise.all(scopes.map((s) => ledger.getStats(s)));
        for (const st of stats) {
          expect(violations(st)).toEqual([]);
          expect(st.reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
        }
        // Exact accounting: every call is charged once to global and to one scope of each kind.
        const used = (kind: BudgetScopeKind) =>
          stats.filter((s) => budgetScopeKind(s.scope) === kind).reduce((n, s) => n + s.used.tokens, 0);
        for (const kind of ["global", "tenant", "user", "session"] as const) expect(used(kind)).toBe(billed.tokens);
      } finally {
        await fake.close();
      }
    },
  );
});
