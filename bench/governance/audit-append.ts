/**
 * Audit log throughput: hash-chained appends per second into one shared chain, from one
 * process (1 and 16 appends in flight) and from 4 processes (1 and 8 in flight each), then the
 * whole chain verified. Also reports the compare-and-append retry rate (script calls per append).
 *
 *   node --conditions=@agentry/source --import tsx bench/governance/audit-append.ts [--seconds N]
 *
 * Uses REDIS_URL when set, else starts a private redis-server.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createRedis } from "../../packages/core/src/index.js";
import { AuditLog } from "../../packages/governance/src/index.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import { p99Text, percentile, sortedCopy } from "../lib/stats.js";

const SELF = fileURLToPath(import.meta.url);
const PROCESSES = 4;

interface RunResult {
  appends: number;
  elapsedMs: number;
  latenciesMs: number[];
}

async function run(
  url: string,
  prefix: string,
  concurrency: number,
  durationMs: number,
  startAt = 0,
): Promise<RunResult> {
  const redis = createRedis({ url });
  const log = new AuditLog({ redis, prefix });
  while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
  const latenciesMs: number[] = [];
  const started = performance.now();
  const deadline = started + durationMs;
  let appends = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, lane) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const t0 = performance.now();
        await log.append({
          type: "action",
          taskId: `task-${process.pid}-${lane}`,
          sessionId: `s-${lane}`,
          userId: "u1",
          tenant: "acme",
          traceId: randomBytes(16).toString("hex"),
          data: {
            tool: "get_weather",
            toolUseId: `toolu_${i}`,
            input: { city: "Paris" },
            outcome: "ok",
            output: '{"tempC":18,"sky":"clear"}',
            durationMs: 3,
          },
        });
        latenciesMs.push(performance.now() - t0);
        appends += 1;
      }
    }),
  );
  const elapsedMs = performance.now() - started;
  redis.disconnect();
  return { appends, elapsedMs, latenciesMs };
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

async function scriptCalls(admin: ReturnType<typeof createRedis>): Promise<number> {
  const stats = await admin.info("commandstats");
  let calls = 0;
  for (const cmd of ["evalsha", "eval"]) {
    const m = new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(stats);
    if (m) calls += Number(m[1]);
  }
  return calls;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "--child") {
    const [url, prefix, concurrency, durationMs, startAt] = args.slice(1);
    const r = await run(url ?? "", prefix ?? "", Number(concurrency), Number(durationMs), Number(startAt));
    process.stdout.write(JSON.stringify(r));
    return;
  }
  const seconds = Number(args[args.indexOf("--seconds") + 1] ?? 0) || 5;
  const durationMs = seconds * 1000;
  const server = await obtainTestRedis();
  const admin = createRedis({ url: server.url });
  console.log(
    `audit log appends (SHA-256 chain, compare-and-append Lua), ${seconds}s per run, Redis ${server.url} (${server.kind})`,
  );
  let failed = false;
  try {
    const scenarios: { label: string; processes: number; concurrency: number }[] = [
      { label: "1 process, 1 in flight", processes: 1, concurrency: 1 },
      { label: "1 process, 16 in flight", processes: 1, concurrency: 16 },
      { label: `${PROCESSES} processes, 1 in flight each`, processes: PROCESSES, concurrency: 1 },
      { label: `${PROCESSES} processes, 8 in flight each`, processes: PROCESSES, concurrency: 8 },
    ];
    for (const s of scenarios) {
      const prefix = `{bench-audit-${randomBytes(4).toString("hex")}}`;
      const callsBefore = await scriptCalls(admin);
      let results: RunResult[];
      if (s.processes === 1) {
        results = [await run(server.url, prefix, s.concurrency, durationMs)];
      } else {
        const startAt = String(Date.now() + 4_000); // every child starts measuring at the same moment
        results = await Promise.all(
          Array.from({ length: s.processes }, () =>
            spawnChild([server.url, prefix, String(s.concurrency), String(durationMs), startAt]),
          ),
        );
      }
      const calls = (await scriptCalls(admin)) - callsBefore;
      const appends = results.reduce((n, r) => n + r.appends, 0);
      const wall = Math.max(...results.map((r) => r.elapsedMs));
      const lat = sortedCopy(results.flatMap((r) => r.latenciesMs));
      const log = new AuditLog({ redis: admin, prefix });
      const t0 = performance.now();
      const verdict = await log.verify();
      const verifyMs = performance.now() - t0;
      const intact = verdict.ok && verdict.count === appends && verdict.lastSeq === appends;
      if (!intact) failed = true;
      console.log(
        `${s.label.padEnd(30)} ${String(Math.round((appends / wall) * 1000)).padStart(7)} appends/s` +
          `   (${appends} appends, p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${p99Text(lat, 2)} ms, ` +
          `${(calls / Math.max(1, appends)).toFixed(2)} script calls per append)` +
          `   chain ${intact ? "intact" : `BROKEN ${JSON.stringify(verdict)}`}, verified in ${Math.round(verifyMs)} ms`,
      );
      await admin.del(log.streamKey, log.headKey);
    }
  } finally {
    admin.disconnect();
    await server.stop();
  }
  if (failed) process.exitCode = 1;
}

await main();
