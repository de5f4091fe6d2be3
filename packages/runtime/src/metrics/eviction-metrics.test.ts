import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { registerEvictionMetrics } from "./eviction-metrics.js";
import { lintExposition } from "./lint-exposition.js";
import { createMetrics } from "./metrics.js";

function sample(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe("registerEvictionMetrics", () => {
  it("reports whether an evicting Redis paused the worker, read at scrape time", async () => {
    const state = { evictionPaused: false };
    const metrics = createMetrics({ defaultMetrics: false });
    registerEvictionMetrics(metrics.registry, state);
    let text = await metrics.metricsText();
    expect(sample(text, "agentry_redis_eviction_paused")).toBe(0);
    state.evictionPaused = true;
    text = await metrics.metricsText();
    expect(sample(text, "agentry_redis_eviction_paused")).toBe(1);
    expect(lintExposition(text)).toEqual([]);
    // Every gauge the README lists as fed by registerEvictionMetrics is exposed.
    const readme = readFileSync(new URL("./README.md", import.meta.url), "utf8");
    const documented = [...readme.matchAll(/^\| `(agentry_[a-z_]+)` +\|.*registerEvictionMetrics.*$/gm)].map(
      (m) => m[1] as string,
    );
    expect(documented).toEqual(["agentry_redis_eviction_paused"]);
    for (const name of documented) expect(text, name).toContain(`# TYPE ${name} gauge`);
  });
});
