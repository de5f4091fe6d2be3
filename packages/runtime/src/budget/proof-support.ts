import { spawn } from "node:child_process";
import type { BudgetLedger } from "./ledger.js";
import type { BudgetScope } from "./scope.js";
import type { BudgetLimit, BudgetStats } from "./types.js";

/** Internal. For test use only. May change without notice. */

/**
 * Runs a TypeScript child process from source (the workspace's source condition, through tsx)
 * and resolves with the JSON of its last stdout line. Rejects with its stderr when it fails.
 */
export function runJsonChild<T>(script: string, args: string[], cwd: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--conditions=@agentry/source", "--import", "tsx", script, ...args],
      { cwd, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`${script} exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out.trim().split("\n").pop() ?? "") as T);
      } catch (e) {
        reject(new Error(`bad child output: ${out} ${err}`, { cause: e }));
      }
    });
  });
}

/** Every way a ledger snapshot breaks a limit, as readable strings (empty when sound). */
export function budgetViolations(s: BudgetStats): string[] {
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

/** A small seeded generator (mulberry32), so a failing seed can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Reads every scope's figures over and over until `stop()`, collecting every limit a snapshot
 * breaks: the proof samples the ledger throughout a run, not only at its end.
 */
export function sampleViolations(
  ledger: BudgetLedger,
  scopes: readonly BudgetScope[],
): { stop(): Promise<{ seen: string[]; samples: number }> } {
  let running = true;
  const seen: string[] = [];
  let samples = 0;
  const loop = (async () => {
    while (running) {
      for (const s of scopes) seen.push(...budgetViolations(await ledger.getStats(s)));
      samples++;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { seen, samples };
    },
  };
}

/** Small budgets on every scope kind, shared by the concurrency proofs: demand is several times what global allows. */
export const PROOF_LIMITS: [BudgetScope, BudgetLimit][] = [
  ["global", { maxTokens: 60_000, maxCostMicroUsd: 150_000, period: "none" }],
  ...[0, 1].map((i): [BudgetScope, BudgetLimit] => [`tenant:t${i}`, { maxTokens: 32_000, period: "none" }]),
  ...[0, 1, 2, 3].map((i): [BudgetScope, BudgetLimit] => [
    `tenant:t${i % 2}:user:u${i}`,
    { maxTokens: 14_000, maxCostMicroUsd: 33_000, period: "none" },
  ]),
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((i): [BudgetScope, BudgetLimit] => [
    `tenant:t${i % 2}:session:s${i}`,
    { maxTokens: 7_000, period: "none" },
  ]),
];
