/**
 * Start-up time of the `agentry` CLI, compiled against run from source: wall time from spawning
 * the process to its exit, for `--version`, `--help` and `status <id>` (which loads the runtime,
 * BullMQ among it, and connects to Redis; the id names no task, so it exits 1 after one lookup).
 *
 *   compiled  node_modules/.bin/agentry: pnpm's shim of @agentry/admin's bin, plain node on
 *             apps/admin/bin/agentry.js → dist/cli.js (what an installed `agentry` runs)
 *   source    node --conditions=@agentry/source --import tsx apps/admin/src/cli.ts
 *             (what `pnpm agentry` runs, without pnpm's own start-up, shown apart)
 *
 * Variants run interleaved, round by round, so a change in the machine's load hits them alike.
 * Builds the CLI first when apps/admin/dist is missing. `--before DIR` also times the installed
 * bin of another built checkout (e.g. main's, `git archive main`, installed and built), so a
 * change's before and after come from the same run.
 *
 *   node --conditions=@agentry/source --import tsx bench/cli/startup.ts [--runs N] [--before DIR]
 *
 * Uses REDIS_URL (else redis://127.0.0.1:6379) for `status`.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { flags } from "../lib/agentry.js";
import { commandLine, emitResult, type Figure } from "../lib/result.js";
import { percentile, round, table } from "../lib/stats.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const args = flags({ runs: "15", before: "" });
const RUNS = args.quick ? 5 : Number(args.runs);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const BIN = join(ROOT, "node_modules", ".bin", "agentry");
const BEFORE_BIN = args.before ? join(resolve(args.before), "node_modules", ".bin", "agentry") : undefined;
const SOURCE = ["--conditions=@agentry/source", "--import", "tsx", join(ROOT, "apps/admin/src/cli.ts")];

interface Variant {
  label: string;
  command: string;
  argv: string[];
  /** Exit code the command must end with (a wrong one means the measurement is of something else). */
  exit: number;
}

const COMMANDS: { name: string; argv: string[]; exit: number }[] = [
  { name: "--version", argv: ["--version"], exit: 0 },
  { name: "--help", argv: ["--help"], exit: 0 },
  { name: "status <id>", argv: ["status", "task_00000000000000000000000000", "--json"], exit: 1 },
];

const variants: Variant[] = [
  { label: "node (no script)", command: process.execPath, argv: ["-e", "0"], exit: 0 },
  ...COMMANDS.flatMap((c) => [
    { label: `${c.name}, compiled (installed bin)`, command: BIN, argv: c.argv, exit: c.exit },
    ...(BEFORE_BIN
      ? [{ label: `${c.name}, compiled, before`, command: BEFORE_BIN, argv: c.argv, exit: c.exit }]
      : []),
    {
      label: `${c.name}, source (tsx)`,
      command: process.execPath,
      argv: [...SOURCE, ...c.argv],
      exit: c.exit,
    },
  ]),
  {
    label: "--version, pnpm agentry (tsx + pnpm)",
    command: "pnpm",
    argv: ["--silent", "agentry", "--version"],
    exit: 0,
  },
];

function timeOnce(v: Variant): number {
  const t0 = performance.now();
  const r = spawnSync(v.command, v.argv, {
    cwd: ROOT,
    // A clean NODE_OPTIONS: nothing of this benchmark's own tsx leaks into the measured process.
    env: { ...process.env, NODE_OPTIONS: "", REDIS_URL },
    encoding: "utf8",
  });
  const ms = performance.now() - t0;
  if (r.status !== v.exit)
    throw new Error(
      `${v.label}: exit ${r.status} (expected ${v.exit}): ${r.stderr}${r.error?.message ?? ""}`,
    );
  return ms;
}

function main(): void {
  if (!existsSync(join(ROOT, "apps/admin/dist/cli.js"))) {
    process.stdout.write("apps/admin/dist is missing: pnpm build\n");
    const built = spawnSync("pnpm", ["build"], { cwd: ROOT, stdio: "inherit" });
    if (built.status !== 0) throw new Error("pnpm build failed");
  }
  if (!existsSync(BIN))
    throw new Error(`${BIN} is missing: run pnpm install (the root package links @agentry/admin's bin)`);
  if (BEFORE_BIN && !existsSync(BEFORE_BIN))
    throw new Error(`${BEFORE_BIN} is missing: install and build the --before checkout`);

  // One warm-up round (file system cache, tsx's transform cache), not counted.
  for (const v of variants) timeOnce(v);
  const samples = new Map<string, number[]>(variants.map((v) => [v.label, []]));
  for (let round = 0; round < RUNS; round++)
    for (const v of variants) samples.get(v.label)?.push(timeOnce(v));

  const median = (label: string) =>
    percentile(
      [...(samples.get(label) ?? [])].sort((a, b) => a - b),
      50,
    );
  const rows = variants.map((v) => {
    const sorted = [...(samples.get(v.label) ?? [])].sort((a, b) => a - b);
    return [
      v.label,
      round(percentile(sorted, 50)),
      round(percentile(sorted, 90)),
      round(sorted[0] ?? Number.NaN),
    ];
  });
  process.stdout.write(`agentry start-up, ${RUNS} runs each (ms, wall time from spawn to exit)\n`);
  process.stdout.write(`${table(["command", "median", "p90", "min"], rows)}\n`);

  const figures: Figure[] = [];
  for (const c of COMMANDS) {
    const compiled = median(`${c.name}, compiled (installed bin)`);
    const source = median(`${c.name}, source (tsx)`);
    figures.push({
      label: `agentry ${c.name}, compiled (installed bin), median`,
      value: round(compiled),
      unit: "ms",
    });
    figures.push({ label: `agentry ${c.name}, source (tsx), median`, value: round(source), unit: "ms" });
    figures.push({ label: `ratio source ÷ compiled, ${c.name}`, value: round(source / compiled, 2) });
    if (BEFORE_BIN) {
      const before = median(`${c.name}, compiled, before`);
      figures.push({
        label: `agentry ${c.name}, compiled, before, median`,
        value: round(before),
        unit: "ms",
      });
      figures.push({
        label: `ratio before ÷ after, ${c.name}, compiled`,
        value: round(before / compiled, 2),
      });
    }
  }
  figures.push({
    label: "node -e 0, median",
    value: round(median("node (no script)")),
    unit: "ms",
    note: "the floor: node's own start-up",
  });
  figures.push({
    label: "pnpm agentry --version, median",
    value: round(median("--version, pnpm agentry (tsx + pnpm)")),
    unit: "ms",
  });
  process.stdout.write(
    `\n${figures.map((f) => `${f.label}: ${f.value}${f.unit ? ` ${f.unit}` : ""}`).join("\n")}\n`,
  );
  emitResult({
    name: "cli-startup",
    command: commandLine("bench/cli/startup.ts", [
      "--runs",
      String(RUNS),
      ...(args.before ? ["--before", args.before] : []),
    ]),
    figures,
  });
}

main();
