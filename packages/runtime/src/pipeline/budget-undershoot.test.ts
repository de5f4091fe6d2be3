import { fileURLToPath } from "node:url";
import { startFakeAnthropic, useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { BudgetLedger } from "../budget/ledger.js";
import { budgetScopeKind, type BudgetScope, type BudgetScopeKind } from "../budget/scope.js";
import type { BudgetLimit } from "../budget/types.js";
import { budgetViolations, runJsonChild, sampleViolations } from "../budget/proof-support.js";
import type { UndershootReport } from "./budget-undershoot.child.js";

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

        const sampler = sampleViolations(ledger, scopes);
        const reports = await Promise.all(
          Array.from({ length: PROCESSES }, (_, i) =>
            runJsonChild<UndershootReport>(
              CHILD,
              [
                redis.url,
                prefix,
                fake.url,
                String(1_000 + i),
                String(LOOPS),
                String(TASKS_PER_LOOP),
                scopes.join(","),
              ],
              PACKAGE_DIR,
            ),
          ),
        ).finally(() => sampler.stop());
        const { seen, samples } = await sampler.stop();

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
          expect(budgetViolations(st)).toEqual([]);
          expect(st.reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
        }
        // Exact accounting: every call is charged once to global and to one scope of each kind.
        const used = (kind: BudgetScopeKind) =>
          stats.filter((s) => budgetScopeKind(s.scope) === kind).reduce((n, s) => n + s.used.tokens, 0);
        for (const kind of ["global", "tenant", "user", "session"] as const)
          expect(used(kind)).toBe(billed.tokens);
      } finally {
        await fake.close();
      }
    },
  );
});
