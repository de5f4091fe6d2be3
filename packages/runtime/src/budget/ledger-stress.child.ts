/**
 * Internal. For test use only. One process of the budget concurrency proof
 * (ledger-concurrency.test.ts): many concurrent loops of reserve → delay → settle / release /
 * abandon against shared small budgets, plus a reaper loop. Prints one JSON line of figures.
 *
 * Args: <redisUrl> <prefix> <seed> <loops> <iterations> <leaseMs> <scopes, comma-separated> [callsPerDraw]
 * Every call reserves on global plus one tenant, one user and one session scope from that list.
 * With `callsPerDraw` > 0 the calls go through an {@link AllowanceLedger} drawing that many
 * calls' worth at once; a call is then never abandoned (released instead: a dead process is the
 * allowance proof's own case), and the process returns its allowances before it reports. It
 * prints `progress` lines as it grants, so a proof can kill it mid-run.
 */
import { Redis } from "ioredis";
import { AllowanceLedger, type CallLedger } from "./allowance.js";
import { BudgetLedger } from "./ledger.js";
import { budgetScopeKind, parseScope, type BudgetScope, type BudgetScopeKind } from "./scope.js";
import type { BudgetAmount, ExpiredReservation } from "./types.js";
import { seededRandom } from "./proof-support.js";

/** What the child prints as its last line (read by the proof test). */
export interface StressReport {
  granted: number;
  settled: number;
  released: number;
  abandoned: number;
  exceeded: number;
  contended: number;
  overruns: number;
  reapedByThisProcess: number;
  /** Live reservations reaped before their settle (a busy machine): the settle corrected the charge. */
  correctedReaps: number;
  /** Live reservations reaped before their release: they stay charged at the reserved amount. */
  releasedAfterReap: number;
  /** What this process charged per scope (settles, and reservations it reaped). */
  charges: Record<string, BudgetAmount>;
}

function addCharge(charges: Record<string, BudgetAmount>, scopes: string[], amount: BudgetAmount): void {
  for (const s of scopes) {
    const c = (charges[s] ??= { tokens: 0, costMicroUsd: 0 });
    c.tokens += amount.tokens;
    c.costMicroUsd += amount.costMicroUsd;
  }
}

async function main(): Promise<void> {
  const [url, prefix, seedText, loopsText, iterationsText, leaseText, scopeText, drawText] =
    process.argv.slice(2);
  const callsPerDraw = Number(drawText ?? "0");
  if (!url || !prefix || !scopeText) {
    throw new Error(
      "usage: ledger-stress.child.ts <redisUrl> <prefix> <seed> <loops> <iterations> <leaseMs> <scopes>",
    );
  }
  const all = scopeText.split(",").map(parseScope);
  const ofKind = (kind: BudgetScopeKind) => all.filter((s) => budgetScopeKind(s) === kind);
  const [tenants, users, sessions] = [ofKind("tenant"), ofKind("user"), ofKind("session")];
  const random = seededRandom(Number(seedText));
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = <T>(xs: T[]): T => xs[int(0, xs.length - 1)] as T;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const report: StressReport = {
    granted: 0,
    settled: 0,
    released: 0,
    abandoned: 0,
    exceeded: 0,
    contended: 0,
    overruns: 0,
    reapedByThisProcess: 0,
    correctedReaps: 0,
    releasedAfterReap: 0,
    charges: {},
  };
  const onLeaseExpired = (r: ExpiredReservation) => {
    report.reapedByThisProcess++;
    addCharge(report.charges, r.scopes, r.amount);
  };
  const ledger = new BudgetLedger({
    redis,
    prefix,
    leaseMs: Number(leaseText),
    onLeaseExpired,
    contendedRetryMs: 10,
  });
  const allowances =
    callsPerDraw > 0 ? new AllowanceLedger({ ledger, callsPerDraw, idleMs: 30, maxAgeMs: 200 }) : undefined;
  const calls: CallLedger = allowances ?? ledger;

  const loop = async () => {
    for (let i = 0; i < Number(iterationsText); i++) {
      const scopes: BudgetScope[] = ["global", pick(tenants), pick(users), pick(sessions)];
      const tokens = int(20, 400);
      const amount = { tokens, costMicroUsd: tokens * 2 + int(0, 50) };
      const r = await calls.reserve({ taskId: `task-${process.pid}-${i}`, scopes, amount });
      if (!r.ok) {
        report[r.reason]++;
        if (r.reason === "contended") await sleep(int(1, r.retryAfterMs));
        continue;
      }
      report.granted++;
      if (allowances && report.granted % 10 === 0) process.stdout.write(`progress ${report.granted}\n`);
      await sleep(int(0, 15));
      const action = random();
      if (action < 0.85) {
        const actual = { tokens: int(0, amount.tokens), costMicroUsd: int(0, amount.costMicroUsd) };
        const s = await calls.settle(r.reservation.id, actual);
        if (s.overrun) report.overruns++;
        if (s.settled) {
          report.settled++;
          addCharge(report.charges, scopes, actual);
        }
        if (s.correctedReap) {
          // The reaper charged the reserved amount; this settle replaced it with the actual one.
          report.correctedReaps++;
          addCharge(report.charges, scopes, { tokens: -amount.tokens, costMicroUsd: -amount.costMicroUsd });
        }
      } else if (action < 0.95 || allowances) {
        if (await calls.release(r.reservation.id)) report.released++;
        else report.releasedAfterReap++;
      } else {
        report.abandoned++; // a "dead worker": its lease runs out and a reaper charges the reserved amount
      }
    }
  };

  let running = true;
  const reaper = (async () => {
    while (running) {
      await ledger.reapExpired();
      await sleep(25);
    }
  })();
  await Promise.all(Array.from({ length: Number(loopsText) }, loop));
  await allowances?.close();
  running = false;
  await reaper;
  await redis.quit();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
