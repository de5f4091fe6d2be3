import { readFileSync } from "node:fs";
import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { FairShare } from "../fair/fair-share.js";
import { lintExposition } from "./lint-exposition.js";
import { createMetrics } from "./metrics.js";
import { registerTenantLoadMetrics } from "./tenant-load-metrics.js";

const redis = useTestRedis("tenant-metrics");

function sample(text: string, nameAndLabels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${nameAndLabels} `));
  return line === undefined ? undefined : Number(line.slice(nameAndLabels.length + 1));
}

describe("registerTenantLoadMetrics", () => {
  it("reports each tenant's running and waiting tasks and its cap, read from Redis at scrape time", async () => {
    const fair = new FairShare({ redis: redis.client(), prefix: redis.freshPrefix("tm") });
    await fair.setSettings("acme", { maxRunning: 1 });
    const { stamps } = await fair.stamp("acme", ["t1", "t2", "t3"], { fair: true });
    await fair.stamp("globex", ["g1"], { fair: true });
    for (const s of stamps.slice(0, 2))
      await fair.admit({ taskId: s.taskId, tenant: "acme", attempt: "w", priority: s.priority });

    const metrics = createMetrics({ defaultMetrics: false });
    registerTenantLoadMetrics(metrics.registry, { read: () => fair.load() });
    const text = await metrics.metricsText();
    // t1 runs; t2 was held back by the cap and, like t3, still waits.
    expect(sample(text, 'agentry_tenant_running_tasks{tenant="acme"}')).toBe(1);
    expect(sample(text, 'agentry_tenant_waiting_tasks{tenant="acme"}')).toBe(2);
    expect(sample(text, 'agentry_tenant_max_running_tasks{tenant="acme"}')).toBe(1);
    expect(sample(text, 'agentry_tenant_waiting_tasks{tenant="globex"}')).toBe(1);
    expect(sample(text, 'agentry_tenant_running_tasks{tenant="globex"}')).toBe(0);
    expect(sample(text, 'agentry_tenant_max_running_tasks{tenant="globex"}')).toBeUndefined();
    // Every gauge the README lists as fed by registerTenantLoadMetrics is exposed.
    const readme = readFileSync(new URL("./README.md", import.meta.url), "utf8");
    const documented = [
      ...readme.matchAll(/^\| `(agentry_[a-z_]+)` +\|.*registerTenantLoadMetrics.*$/gm),
    ].map((m) => m[1] as string);
    expect(documented).toEqual([
      "agentry_tenant_running_tasks",
      "agentry_tenant_waiting_tasks",
      "agentry_tenant_max_running_tasks",
    ]);
    for (const name of documented) expect(text, name).toContain(`# TYPE ${name} gauge`);
    // Names, help and types pass the promtool rules and Agentry's unit conventions.
    expect(lintExposition(text)).toEqual([]);
  });

  it("keeps the last values and counts a collector error when the read fails", async () => {
    let fail = false;
    const metrics = createMetrics({ defaultMetrics: false });
    registerTenantLoadMetrics(metrics.registry, {
      read: async () => {
        if (fail) throw new Error("redis down");
        return [{ tenant: "acme", running: 3, waiting: 7, maxRunning: null, weight: 1 }];
      },
    });
    expect(sample(await metrics.metricsText(), 'agentry_tenant_waiting_tasks{tenant="acme"}')).toBe(7);
    fail = true;
    expect(sample(await metrics.metricsText(), 'agentry_tenant_waiting_tasks{tenant="acme"}')).toBe(7);
    // The error counter may be written out before the failed read ends: it shows by the next scrape.
    const text = await metrics.metricsText();
    expect(sample(text, 'agentry_tenant_waiting_tasks{tenant="acme"}')).toBe(7);
    expect(
      sample(text, 'agentry_metrics_collect_errors_total{collector="tenant_load"}'),
    ).toBeGreaterThanOrEqual(1);
  });
});
