import { redactRedisUrl } from "@agentry/core/base";
import { usageError } from "./io.js";

/**
 * Renders rows as a plain-text table: a header line, then one line per row, columns padded
 * to the widest cell. Cells are squeezed to one line and cut at `maxWidth` characters.
 */
export function table(headers: string[], rows: string[][], options: { maxWidth?: number } = {}): string {
  const maxWidth = options.maxWidth ?? 60;
  const clean = (cell: string) => truncate(cell.replace(/\s+/g, " ").trim(), maxWidth);
  const cells = [headers, ...rows.map((r) => r.map(clean))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** Key/value lines (`key  value`), keys padded; rows with an undefined value are left out. */
export function keyValues(rows: [string, string | undefined][]): string {
  const present = rows.filter((r): r is [string, string] => r[1] !== undefined);
  const width = Math.max(0, ...present.map(([k]) => k.length));
  return present.map(([k, v]) => `${k.padEnd(width)}  ${v}\n`).join("");
}

/** Cuts text to `max` characters with an ellipsis. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

/** Compact one-line JSON of a tool input, cut for a table cell. */
export function summarize(value: unknown, max = 40): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return truncate(text, max);
}

const MICRO = 1_000_000n;

/**
 * Parses a dollar amount given as decimal text (`0.25`, `$3`, `.5`) into integer micro-USD,
 * exactly (no floating point): `0.25` → 250000. More than 6 significant decimals cannot be
 * represented and are refused (usage error), as are negative or unsafe amounts.
 */
export function parseUsdToMicro(text: string, flag = "--max-cost"): number {
  const m = /^\$?(?:(\d+)(?:\.(\d*))?|\.(\d+))$/.exec(text.trim());
  if (!m) throw usageError(`${flag} must be an amount of US dollars such as 0.25 (got "${text}")`);
  const whole = m[1] ?? "0";
  let fraction = m[2] ?? m[3] ?? "";
  if (fraction.length > 6) {
    if (/[1-9]/.test(fraction.slice(6)))
      throw usageError(
        `${flag} has more than 6 decimal places; budgets count whole micro-USD (got "${text}")`,
      );
    fraction = fraction.slice(0, 6);
  }
  const micro = BigInt(whole) * MICRO + BigInt(fraction.padEnd(6, "0"));
  if (micro > BigInt(Number.MAX_SAFE_INTEGER)) throw usageError(`${flag} is too large (got "${text}")`);
  return Number(micro);
}

/** Integer micro-USD as dollars with 6 decimals: 250000 → `$0.250000`. */
export function formatUsd(micro: number): string {
  const sign = micro < 0 ? "-" : "";
  const abs = BigInt(Math.abs(Math.trunc(micro)));
  return `${sign}$${abs / MICRO}.${(abs % MICRO).toString().padStart(6, "0")}`;
}

/** Parses a non-negative integer flag value (`--max-tokens 1000`). */
export function parseCount(text: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) throw usageError(`${flag} must be a whole number (got "${text}")`);
  const n = Number(text.trim());
  if (!Number.isSafeInteger(n)) throw usageError(`${flag} is too large (got "${text}")`);
  return n;
}

/** Parses a positive number of seconds (`--timeout 30`, `--timeout 0.5`) into milliseconds. */
export function parseSeconds(text: string, flag: string): number {
  const s = Number(text.trim());
  if (!/^\d+(?:\.\d+)?$/.test(text.trim()) || !(s > 0))
    throw usageError(`${flag} must be a positive number of seconds (got "${text}")`);
  return Math.round(s * 1000);
}

/** A duration for humans: `45s`, `12m 5s`, `3h`, `3h 20m`, `2d 4h`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const two = (a: number, ua: string, b: number, ub: string) =>
    b === 0 ? `${a}${ua}` : `${a}${ua} ${b}${ub}`;
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return two(m, "m", s % 60, "s");
  const h = Math.floor(m / 60);
  if (h < 48) return two(h, "h", m % 60, "m");
  return two(Math.floor(h / 24), "d", h % 24, "h");
}

/** `in 12m 5s` / `expired 3s ago`, relative to `now`. */
export function expiresIn(expiresAt: number, now: number): string {
  return expiresAt > now ? formatDuration(expiresAt - now) : `expired ${formatDuration(now - expiresAt)} ago`;
}

/** Epoch ms as ISO-8601 (UTC, seconds). */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A Redis URL with its password masked, fit for messages. */
export function safeRedisUrl(url: string): string {
  return redactRedisUrl(url).replace(/\/$/, "");
}
