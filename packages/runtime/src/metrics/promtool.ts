import { spawnSync } from "node:child_process";

/** What `promtool check metrics` said about an exposition. */
export interface PromtoolVerdict {
  /** True when promtool exited 0 (no problem found). */
  ok: boolean;
  /** Its output, one problem per line. */
  output: string;
}

/**
 * Runs `promtool check metrics` (Prometheus's own checker) on an exposition given on stdin.
 * Returns `undefined` when `promtool` is not on `PATH`, so a test can run it where it exists and
 * rely on `lintExposition` elsewhere.
 */
export function promtoolCheckMetrics(text: string, command = "promtool"): PromtoolVerdict | undefined {
  const result = spawnSync(command, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 30_000 });
  if (result.error && (result.error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
  if (result.error) return { ok: false, output: result.error.message };
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}`.trim() };
}
