/**
 * Budget ledger throughput: reserve+settle pairs per second (each reserve covers four
 * scopes: global, tenant, user, session), from one process at concurrency 1, 16 and 64 and
 * from 4 processes, then the same through budget allowances (AllowanceLedger, 8 calls' worth
 * per draw) with the script calls per pair, then an overshoot check against a small budget,
 * on the ledger and through allowances (each must print 0).
 *
 *   node --conditions=@agentry/source --import tsx bench/budget/reserve-settle.ts [--seconds N]
 *
 * Uses REDIS_URL when set, else starts a private redis-server.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createRedis } from "../../packages/core/src/index.js";
import {
  AllowanceLedger,
  BudgetLedger,
  type BudgetScope,
  type CallLedger,
} from "../../packages/runtime/src/budget/index.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import { p99Text, percentile, sortedCopy } from "../lib/stats.js";

const SELF = fileURLToPath(import.meta.url);
const PROCESSES = 4;
/** Calls' worth an allowance draws, in the allowance runs. */
const CALLS_PER_DRAW = 8;

interface RunResult {
  pairs: number;
  refused: number;
  elapsedMs: number;
  latenciesMs: number[];
}

function scopesFor(i: number): BudgetScope[] {
  return [
    "global",
    `tenant:t${i % 4}`,
    `tenant:t${i % 4}:user:u${i % 16}`,
    `tenant:t${i % 4}:session:s${i % 64}`,
  ];
}

/**
 * Runs `concurrency` loops of reserve → settle for `durationMs`, starting at `startAt`
 * (so that processes started one after another measure the same window). With `small`,
 * a loop stops once 20 reservations in a row were refused as exceeded (the budget is spent).
 */
async function run(
  url: string,
  prefix: string,
  concurrency: number,
  durationMs: number,
  small: boolean,
  startAt = Date.now(),
  callsPerDraw = 0,
): Promise<RunResult> {
  const redis = createRedis({ url, role: "command", connectionName: "bench-budget" });
  const shared = new BudgetLedger({ redis, prefix });
  const allowances = callsPerDraw > 0 ? new AllowanceLedger({ ledger: shared, callsPerDraw }) : undefined;
  const ledger: CallLedger = allowances ?? shared;
  await redis.ping();
  await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
  const latencies: number[] = [];
  let pairs = 0;
  let refused = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      let i = loop;
      let exceededInARow = 0;
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const tokens = small ? 50 + Math.floor(Math.random() * 400) : 1_000;
        const amount = { tokens, costMicroUsd: tokens * 3 };
        const r = await ledger.reserve({ taskId: `bench-${loop}`, scopes: scopesFor(i++), amount });
        if (!r.ok) {
          refused++;
          exceededInARow = r.reason === "exceeded" ? exceededInARow + 1 : 0;
          if (small && exceededInARow >= 20) return; // the budget is spent: this loop is done
          continue;
        }
        exceededInARow = 0;
        const actual = { tokens: Math.floor(Math.random() * (tokens + 1)), costMicroUsd: tokens * 3 };
        await ledger.settle(r.reservation.id, actual);
        latencies.push(performance.now() - t0);
        pairs++;
      }
    }),
  );
  const elapsedMs = performance.now() - start;
  // What the allowances served goes back to the ledger (outside the timed window).
  await allowances?.close();
  await redis.quit();
  return { pairs, refused, elapsedMs, latenciesMs: latencies };
}

function spawnChild(args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--conditions=@agentry/source", "--import", "tsx", SELF, "--child", ...args],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out) as RunResult) : reject(new Error(`bench child exited ${code}`)),
    );
  });
}

function line(label: string, results: RunResult[], wallMs: number, scriptCalls?: number): void {
  const pairs = results.reduce((n, r) => n + r.pairs, 0);
  const lat = sortedCopy(results.flatMap((r) => r.latenciesMs));
  const calls =
    scriptCalls === undefined
      ? ""
      : `, ${(scriptCalls / Math.max(1, pairs)).toFixed(2)} script calls per pair`;
  console.log(
    `${label.padEnd(28)} ${String(Math.round((pairs / wallMs) * 1000)).padStart(7)} pairs/s` +
      `   (${pairs} pairs, p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${p99Text(lat, 2)} ms per pair${calls})`,
  );
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "--child") {
    const [url, prefix, concurrency, durationMs, small, startAt, callsPerDraw] = args.slice(1);
    const result = await run(
      url ?? "",
      prefix ?? "",
      Number(concurrency),
      Number(durationMs),
      small === "small",
      Number(startAt),
      Number(callsPerDraw ?? 0),
    );
    process.stdout.write(JSON.stringify(result));
    return;
  }
  const seconds = Number(args[args.indexOf("--seconds") + 1] ?? 0) || 5;
  const durationMs = seconds * 1000;
  const server = await obtainTestRedis();
  const prefix = `{bench-budget-${randomBytes(4).toString("hex")}}`;
  const admin = createRedis({ url: server.url });
  const setup = new BudgetLedger({ redis: admin, prefix });
  try {
    console.log(
      `budget ledger reserve+settle, 4 scopes per reservation, ${seconds}s per run, Redis ${server.url} (${server.kind})`,
    );
    const big = {
      maxTokens: Number.MAX_SAFE_INTEGER,
      maxCostMicroUsd: Number.MAX_SAFE_INTEGER,
      period: "day",
    } as const;
    for (let i = 0; i < 64; i++) for (const s of scopesFor(i)) await setup.setLimit(s, big);

    for (const c of [1, 16, 64]) {
      const r = await run(server.url, prefix, c, durationMs, false);
      line(`1 process, concurrency ${c}`, [r], r.elapsedMs);
    }
    const go = () => String(Date.now() + 4_000); // every child starts measuring at the same moment
    const startMany = go();
    const many = await Promise.all(
      Array.from({ length: PROCESSES }, () =>
        spawnChild([server.url, prefix, "16", String(durationMs), "big", startMany]),
      ),
    );
    line(`${PROCESSES} processes x concurrency 16`, many, Math.max(...many.map((r) => r.elapsedMs)));

    // Server-side cost of the scripts, less sensitive to a busy machine than pairs/s.
    const stats = await admin.info("commandstats");
    for (const cmd of ["evalsha", "eval"]) {
      const m = new RegExp(`cmdstat_${cmd}:calls=(\\d+),usec=\\d+,usec_per_call=([\\d.]+)`).exec(stats);
      if (m) console.log(`redis ${cmd}: ${m[1]} calls, ${m[2]} µs per call (server time)`);
    }

    // The same pairs through budget allowances: a draw and a return per 8 calls' worth per scope.
    const scriptCalls = async () => {
      const m = /cmdstat_evalsha:calls=(\d+)/.exec(await admin.info("commandstats"));
      return Number(m?.[1] ?? 0);
    };
    const drawn = `${prefix.slice(0, -1)}-drawn}`;
    for (let i = 0; i < 64; i++)
      for (const sc of scopesFor(i))
        await new BudgetLedger({ redis: admin, prefix: drawn }).setLimit(sc, big);
    const label = `allowances of ${CALLS_PER_DRAW} calls`;
    let before = await scriptCalls();
    const one = await run(server.url, drawn, 16, durationMs, false, Date.now(), CALLS_PER_DRAW);
    line(`1 process, concurrency 16, ${label}`, [one], one.elapsedMs, (await scriptCalls()) - before);
    before = await scriptCalls();
    const startDrawn = go();
    const manyDrawn = await Promise.all(
      Array.from({ length: PROCESSES }, () =>
        spawnChild([server.url, drawn, "16", String(durationMs), "big", startDrawn, String(CALLS_PER_DRAW)]),
      ),
    );
    line(
      `${PROCESSES} processes x concurrency 16, ${label}`,
      manyDrawn,
      Math.max(...manyDrawn.map((r) => r.elapsedMs)),
      (await scriptCalls()) - before,
    );

    // Overshoot: a small budget hammered by 4 processes x 64 loops until it is spent.
    const small = `{bench-budget-small-${randomBytes(4).toString("hex")}}`;
    const ledger = new BudgetLedger({ redis: admin, prefix: small });
    const limits: [BudgetScope, number][] = [["global", 200_000]];
    for (let i = 0; i < 4; i++) limits.push([`tenant:t${i}`, 60_000]);
    for (let i = 0; i < 16; i++) limits.push([`tenant:t${i % 4}:user:u${i}`, 15_000]);
    for (let i = 0; i < 64; i++) limits.push([`tenant:t${i % 4}:session:s${i}`, 4_000]);
    for (const [s, max] of limits)
      await ledger.setLimit(s, { maxTokens: max, maxCostMicroUsd: max * 3, period: "none" });
    const startHammer = go();
    const hammer = await Promise.all(
      Array.from({ length: PROCESSES }, () =>
        spawnChild([server.url, small, "64", String(durationMs * 4), "small", startHammer]),
      ),
    );
    let overshoot = 0;
    let spent = 0;
    for (const [s, max] of limits) {
      const st = await ledger.getStats(s);
      overshoot += Math.max(0, st.used.tokens - max) + Math.max(0, st.used.costMicroUsd - max * 3);
      if (s === "global") spent = st.used.tokens;
    }
    const refused = hammer.reduce((n, r) => n + r.refused, 0);
    const granted = hammer.reduce((n, r) => n + r.pairs, 0);
    console.log(
      `overshoot check: ${granted} granted, ${refused} refused, global spent ${spent}/200000 tokens; overshoot (tokens + micro-USD past any limit): ${overshoot}`,
    );
    // The same small budget, hammered through allowances.
    const smallDrawn = `{bench-budget-small-drawn-${randomBytes(4).toString("hex")}}`;
    const drawnLedger = new BudgetLedger({ redis: admin, prefix: smallDrawn });
    for (const [s, max] of limits)
      await drawnLedger.setLimit(s, { maxTokens: max, maxCostMicroUsd: max * 3, period: "none" });
    const startDrawnHammer = go();
    const drawnHammer = await Promise.all(
      Array.from({ length: PROCESSES }, () =>
        spawnChild([
          server.url,
          smallDrawn,
          "64",
          String(durationMs * 4),
          "small",
          startDrawnHammer,
          String(CALLS_PER_DRAW),
        ]),
      ),
    );
    let drawnOvershoot = 0;
    let drawnSpent = 0;
    for (const [s, max] of limits) {
      const st = await drawnLedger.getStats(s);
      drawnOvershoot += Math.max(0, st.used.tokens - max) + Math.max(0, st.used.costMicroUsd - max * 3);
      if (s === "global") drawnSpent = st.used.tokens;
    }
    console.log(
      `overshoot check, allowances of ${CALLS_PER_DRAW} calls: ${drawnHammer.reduce((n, r) => n + r.pairs, 0)} granted, ${drawnHammer.reduce((n, r) => n + r.refused, 0)} refused, global spent ${drawnSpent}/200000 tokens; overshoot (tokens + micro-USD past any limit): ${drawnOvershoot}`,
    );
    for (const p of [prefix, drawn, small, smallDrawn]) {
      const keys = await admin.keys(`${p}*`);
      // In chunks: a full-length run leaves hundreds of thousands of keys (one spread would overflow the stack).
      for (let i = 0; i < keys.length; i += 1000) await admin.unlink(...keys.slice(i, i + 1000));
    }
  } finally {
    await admin.quit();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
