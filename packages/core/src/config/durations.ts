import { AgentryError } from "../errors/agentry-error.js";

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration given as milliseconds (number) or a string like `500ms`, `30s`, `5m`, `1h`, `7d`.
 * Throws `INVALID_CONFIG` on anything else.
 */
export function durationMs(value: number | string): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0)
      throw new AgentryError("INVALID_CONFIG", `Bad duration: ${value}`);
    return Math.round(value);
  }
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
  if (!match)
    throw new AgentryError("INVALID_CONFIG", `Bad duration "${value}" (use e.g. 500ms, 30s, 5m, 1h, 7d)`);
  return Math.round(Number(match[1]) * (UNITS[match[2] as string] as number));
}
