import { fileURLToPath } from "node:url";
import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { BudgetLedger } from "./ledger.js";
import type { BudgetAmount } from "./types.js";
import { PROOF_LIMITS, budgetViolations, runJsonChild, sampleViolations } from "./proof-support.js";
import type { StressReport } from "./ledger-stress.child.js";

const redis = useTestRedis("budget-proof");
const CHILD = fileURLToPath(new URL("./ledger-stress.child.ts", import.meta.url));
const PACKAGE_DIR = fileURLToPath(new URL("../..", import.meta.url));

const PROCESSES = 4;
const LOOPS = 50;
const ITERATIONS = 15;
const LEASE_MS = 300;

describe("BudgetLedger concurrency proof", () => {
  for (const seed of [1, 2, 3]) {
    it(
      `${PROCESSES} processes x ${LOOPS} loops never spend past a limit (seed ${seed})`,
      { timeout: 120_000 },
      async () => {
        const prefix = `{${redis.freshPrefix(`proof${seed}`)}}`;
        const ledger = new BudgetLedger({ redis: redis.client(), prefix, leaseMs: LEASE_MS });
        for (const [scope, limit] of PROOF_LIMITS) await ledger.setLimit(scope, limit);
        const scopes = PROOF_LIMITS.map(([s]) => s);

        const sampler = sampleViolations(ledger, scopes);
        const reports = await Promise.all(
          Array.from({ length: PROCESSES }, (_, i) =>
            runJsonChild<StressReport>(
              CHILD,
              [
                redis.url,
                prefix,
                String(seed * 1_000 + i),
                String(LOOPS),
                String(ITERATIONS),
                String(LEASE_MS),
                scopes.join(","),
              ],
              PACKAGE_DIR,
            ),
          ).map((p) => p.finally(() => undefined)),
        ).finally(() => sampler.stop());
        const { seen, samples } = await sampler.stop();

        // Reservations abandoned at the very end: wait out their lease and reap them here.
        await new Promise((r) => setTimeout(r, LEASE_MS + 50));
        const lateReaped = await ledger.reapExpired(10_000);

        const total = (k: keyof Omit<StressReport, "charges">) => reports.reduce((n, r) => n + r[k], 0);
        const charged: Record<string, BudgetAmount> = {};
        const add = (scope: string, a: BudgetAmount) => {
          const c = (charged[scope] ??= { tokens: 0, costMicroUsd: 0 });
          c.tokens += a.tokens;
          c.costMicroUsd += a.costMicroUsd;
        };
        for (const r of reports) for (const [s, a] of Object.entries(r.charges)) add(s, a);
        for (const r of lateReaped) for (const s of r.scopes) add(s, r.amount);

        expect(seen).toEqual([]);
        expect(samples).toBeGreaterThan(0);
        // The budget was really contended: calls were refused both ways.
        expect(total("contended")).toBeGreaterThan(0);
        expect(total("exceeded")).toBeGreaterThan(0);
        expect(total("granted")).toBeGreaterThan(0);
        expect(total("overruns")).toBe(0);
        // Every abandoned reservation was reaped exactly once, by some process (and, on a busy
        // machine, a live one whose lease ran out before its settle or release).
        expect(total("reapedByThisProcess") + lateReaped.length).toBe(
          total("abandoned") + total("correctedReaps") + total("releasedAfterReap"),
        );
        expect(total("settled") + total("released") + total("releasedAfterReap") + total("abandoned")).toBe(
          total("granted"),
        );

        for (const scope of scopes) {
          const st = await ledger.getStats(scope);
          expect(budgetViolations(st)).toEqual([]);
          expect(st.reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
          // Exact accounting: Redis holds precisely what the processes charged.
          expect(st.used).toEqual(charged[scope] ?? { tokens: 0, costMicroUsd: 0 });
        }
      },
    );
  }
});
