import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { registerClockMetrics, type ClockState } from "./clock-metrics.js";
import { lintExposition } from "./lint-exposition.js";
import { createMetrics } from "./metrics.js";

function sample(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe("registerClockMetrics", () => {
  it("reports the host clock's offset from Redis's and whether it paused the worker, read at scrape time", async () => {
    const state: { -readonly [K in keyof ClockState]: ClockState[K] } = {
      clockOffsetMs: 12,
      clockSkewPaused: false,
    };
    const metrics = createMetrics({ defaultMetrics: false });
    registerClockMetrics(metrics.registry, state);
    let text = await metrics.metricsText();
    expect(sample(text, "agentry_clock_offset_seconds")).toBe(0.012);
    expect(sample(text, "agentry_clock_skew_paused")).toBe(0);
    state.clockOffsetMs = -7_200_000;
    state.clockSkewPaused = true;
    text = await metrics.metricsText();
    expect(sample(text, "agentry_clock_offset_seconds")).toBe(-7200);
    expect(sample(text, "agentry_clock_skew_paused")).toBe(1);
    expect(lintExposition(text)).toEqual([]);
    // Every gauge the README lists as fed by registerClockMetrics is exposed.
    const readme = readFileSync(new URL("./README.md", import.meta.url), "utf8");
    const documented = [...readme.matchAll(/^\| `(agentry_[a-z_]+)` +\|.*registerClockMetrics.*$/gm)].map(
      (m) => m[1] as string,
    );
    expect(documented).toEqual(["agentry_clock_offset_seconds", "agentry_clock_skew_paused"]);
    for (const name of documented) expect(text, name).toContain(`# TYPE ${name} gauge`);
  });
});
