/**
 * Renders docs/benchmarks.md from one run's record. The file is this module's output and
 * nothing else: every sentence in it comes from here or from the benchmark definitions in
 * bench/run.ts, so a full run reproduces it whole and no figure outlives the run that made it.
 * The record is kept beside it (docs/benchmarks.json), so `pnpm bench --render` can show that
 * the committed file is exactly its render.
 */
import { format, resolveConfig } from "prettier";
import type { MachineFacts } from "./machine.js";
import type { Figure } from "./result.js";

/** One benchmark as it ran. */
export interface BenchRun {
  name: string;
  title: string;
  /** What it measures and how, for the doc. */
  about: string;
  /** Exact command, run from the repository root with REDIS_URL set to the run's Redis. */
  command: string;
  status: "ok" | "failed" | "missing";
  seconds: number;
  figures: Figure[];
  /** The script's printed tables (stdout without the result line). */
  output: string;
  /** How to read the figures, shown after them. */
  note?: string;
}

const duration = (s: number) => (s < 120 ? `${Math.round(s)} s` : `${Math.round(s / 60)} minutes`);
const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
const value = (f: Figure) =>
  `${typeof f.value === "number" ? f.value.toLocaleString("en") : f.value}${f.unit ? ` ${f.unit}` : ""}`;

/** Everything one run knows that the document shows: the document is a function of this. */
export interface BenchRecord {
  facts: MachineFacts;
  loadAtEnd: [number, number, number];
  runs: BenchRun[];
  runCommand: string;
  redisKind: string;
  totalSeconds: number;
  /** Label prefixes of the figures in the summary table. */
  headline: string[];
  /** Closing remarks: known limits of these figures. */
  notes: string[];
}

/**
 * The whole document, formatted as the repository's prettier settings format `filepath`, so a
 * run leaves a file that `pnpm format:check` accepts and a re-render compares byte for byte.
 */
export async function renderFormatted(record: BenchRecord, filepath: string): Promise<string> {
  return format(renderReport(record), { ...(await resolveConfig(filepath)), filepath });
}

/** The whole document, unformatted. */
export function renderReport(options: BenchRecord): string {
  const { facts, runs } = options;
  const out: string[] = [];
  out.push("# Agentry benchmarks", "");
  out.push(
    `Figures of one run of \`${options.runCommand}\` (bench/run.ts), ${facts.date.slice(0, 16).replace("T", " ")} UTC, ` +
      `at commit \`${facts.commit}\` ${facts.dirty ? "**with uncommitted changes** (the figures may match no commit)" : "with a clean working tree"}, ` +
      `${duration(options.totalSeconds)} in all. Every figure below lists the exact ` +
      `command that made it; run from the repository root with \`REDIS_URL\` set to the run's Redis (${options.redisKind}), ` +
      "each prints the same tables on its own. The run writes this file whole: nothing in it is edited by hand, so " +
      "text about a benchmark belongs in its definition in bench/run.ts.",
    "",
  );
  out.push(
    "**How to read these figures.** The machine may be shared with other work (see the load average at the start and " +
      "the end), and absolute rates then move from run to run by tens of percent. Compare the *ratios measured within one run* " +
      "(full task ÷ bare BullMQ job; approvals waiting ÷ none waiting): both sides of a ratio ran within a minute or two of each " +
      "other on the same Redis, the same process layout and the same load. Percentiles are nearest rank; a p99 is given only " +
      "from 100 samples or more, below that the max (or n/a). Benchmarks are not part of `pnpm test`; no test asserts a speed.",
    "",
  );
  out.push("## Machine", "");
  out.push("| | |", "|---|---|");
  out.push(
    `| commit | ${facts.commit}${facts.dirty ? ", with uncommitted changes" : ", clean working tree"} |`,
  );
  out.push(`| CPUs (nproc) | ${facts.cpus} × ${cell(facts.cpuModel)} |`);
  out.push(`| memory | ${facts.memoryGb} GB (${facts.freeMemoryGb} GB free at start) |`);
  out.push(`| load average at start (1, 5, 15 min) | ${facts.loadAverage.join(", ")} |`);
  out.push(`| load average at end | ${options.loadAtEnd.join(", ")} |`);
  out.push(`| OS | ${facts.platform} |`);
  out.push(`| Node.js | ${facts.node} |`);
  out.push(`| Redis | ${facts.redis}, ${options.redisKind}, ${facts.persistence} |`);
  out.push(`| BullMQ | ${facts.bullmq} |`, "");

  out.push("## Summary", "");
  out.push("| figure | value | made by |", "|---|---|---|");
  for (const run of runs) {
    for (const f of run.figures) {
      if (!options.headline.some((h) => f.label.startsWith(h))) continue;
      out.push(`| ${cell(f.label)} | **${cell(value(f))}** | \`${cell(run.command)}\` |`);
    }
    if (run.status !== "ok")
      out.push(
        `| ${cell(run.title)} | ${run.status === "missing" ? "not run: script missing" : "FAILED"} | \`${cell(run.command)}\` |`,
      );
  }
  out.push("");

  for (const run of runs) {
    out.push(`## ${run.title}`, "");
    out.push(run.about, "");
    out.push(`Command (${Math.round(run.seconds)} s):`, "", "```sh", run.command, "```", "");
    if (run.status === "missing") {
      out.push("Not run: the script was not there when this run started.", "");
      continue;
    }
    if (run.status === "failed") out.push("**This benchmark failed in this run**; its output is below.", "");
    if (run.figures.length > 0) {
      out.push("| figure | value | notes |", "|---|---|---|");
      for (const f of run.figures)
        out.push(`| ${cell(f.label)} | ${cell(value(f))} | ${cell(f.note ?? "")} |`);
      out.push("");
    }
    if (run.note) out.push(run.note, "");
    if (run.output.trim())
      out.push(
        "<details><summary>printed output</summary>",
        "",
        "```text",
        run.output.trim(),
        "```",
        "",
        "</details>",
        "",
      );
  }
  if (options.notes.length > 0) {
    out.push("## Known limits of these figures", "");
    for (const n of options.notes) out.push(`- ${n}`);
    out.push("");
  }
  out.push(`Per benchmark: ${runs.map((r) => `${r.name} ${duration(r.seconds)}`).join(", ")}.`, "");
  return `${out.join("\n")}\n`;
}
