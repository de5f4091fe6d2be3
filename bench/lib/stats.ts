/** Small number helpers shared by the benchmark scripts. */

/**
 * Fewest samples a p99 is reported from. Below 100 the nearest rank of the 99th percentile is
 * the largest sample (or next to it), so a "p99" would be the max under another name.
 */
export const P99_MIN_SAMPLES = 100;

/**
 * Nearest-rank percentile of an already sorted array: the smallest sample with at least p % of
 * the samples at or below it (rank ⌈p/100 × n⌉). Every benchmark uses this one definition, so
 * figures from different scripts mean the same thing. NaN when empty.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile: p must be in (0, 100], got ${p}`);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** The p99 of at least {@link P99_MIN_SAMPLES} sorted samples; undefined with fewer. */
export function p99(sorted: readonly number[]): number | undefined {
  return sorted.length >= P99_MIN_SAMPLES ? percentile(sorted, 99) : undefined;
}

/**
 * The tail of a sorted sample as it may be reported: its p99 from at least 100 samples, else
 * its max, with the name to print beside it.
 */
export function tail(sorted: readonly number[]): { name: "p99" | "max"; value: number } {
  const value = p99(sorted);
  return value === undefined ? { name: "max", value: sorted.at(-1) ?? Number.NaN } : { name: "p99", value };
}

/** A p99 for a printed line: the figure with `digits` decimals, or `n/a (n<100)`. */
export function p99Text(sorted: readonly number[], digits: number): string {
  const value = p99(sorted);
  return value === undefined ? `n/a (n<${P99_MIN_SAMPLES})` : value.toFixed(digits);
}

/** Sorts a copy in ascending order (the input of the helpers above). */
export function sortedCopy(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Bytes → megabytes with one decimal. */
export function mb(bytes: number): number {
  return Math.round((bytes / 1024 / 1024) * 10) / 10;
}

/** Rounds to `digits` decimals. */
export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Prints a left-aligned first column and right-aligned others. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  "))
    .join("\n");
}
