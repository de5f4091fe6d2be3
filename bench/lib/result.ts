/**
 * The line a benchmark script prints so `bench/run.ts` can collect its figures without parsing
 * tables: `BENCH_RESULT {"name":...,"figures":[...]}` on stdout, once, at the end.
 */
export const RESULT_MARKER = "BENCH_RESULT ";

/** One figure for docs/benchmarks.md. */
export interface Figure {
  /** What was measured, e.g. "full tasks/s, concurrency 16". */
  label: string;
  value: number | string;
  /** Unit shown after the value, e.g. "tasks/s", "ms", "MB". */
  unit?: string;
  /** Extra context shown beside the value (sizes, counts). */
  note?: string;
}

/** A script's figures, with the exact command that made them. */
export interface BenchResult {
  name: string;
  command: string;
  figures: Figure[];
}

/** Prints the machine-readable result line. */
export function emitResult(result: BenchResult): void {
  process.stdout.write(`${RESULT_MARKER}${JSON.stringify(result)}\n`);
}

/** The result line of a script's output, if any. */
export function parseResult(stdout: string): BenchResult | undefined {
  const line = stdout.split("\n").find((l) => l.startsWith(RESULT_MARKER));
  return line ? (JSON.parse(line.slice(RESULT_MARKER.length)) as BenchResult) : undefined;
}

/** `node --conditions=@agentry/source --import tsx <script> <args>`, as run from the repository root. */
export function commandLine(
  script: string,
  args: readonly string[] = [],
  nodeFlags: readonly string[] = [],
): string {
  return ["node", ...nodeFlags, "--conditions=@agentry/source", "--import", "tsx", script, ...args].join(" ");
}
