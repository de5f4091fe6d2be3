import { Gauge, type Registry } from "prom-client";
import type { TenantLoad } from "../fair/tenant-settings.js";
import { scrapeTimeRefresh } from "./scrape-refresh.js";

/** Options for {@link registerTenantLoadMetrics}. */
export interface TenantLoadMetricsOptions {
  /** Reads every tenant's load at scrape time, e.g. `() => fairShare.load()`. */
  read: () => Promise<readonly TenantLoad[]>;
  /** @defaultValue 2000 */
  collectTimeoutMs?: number;
}

/** The per-tenant gauges of fair share. */
export interface TenantLoadMetrics {
  readonly running: Gauge<"tenant">;
  readonly waiting: Gauge<"tenant">;
  readonly maxRunning: Gauge<"tenant">;
}

/**
 * Registers the fair-share gauges on `registry`, read from Redis at scrape time (one read per
 * scrape for all three): `agentry_tenant_running_tasks`, `agentry_tenant_waiting_tasks` and
 * `agentry_tenant_max_running_tasks` (tenants with a cap only), each by `tenant`. The values are
 * shared state, so every worker reports the same ones: aggregate with `max by (tenant)`. A read
 * that fails or times out keeps the previous values and counts in
 * `agentry_metrics_collect_errors_total{collector="tenant_load"}` when that counter is registered
 * (shown by the next scrape at the latest).
 */
export function registerTenantLoadMetrics(
  registry: Registry,
  options: TenantLoadMetricsOptions,
): TenantLoadMetrics {
  const refresh = scrapeTimeRefresh(registry, options.collectTimeoutMs ?? 2000, (collect) =>
    collect("tenant_load", options.read, (loads) => {
      running.reset();
      waiting.reset();
      maxRunning.reset();
      for (const l of loads) {
        running.set({ tenant: l.tenant }, l.running);
        waiting.set({ tenant: l.tenant }, l.waiting);
        if (l.maxRunning !== null) maxRunning.set({ tenant: l.tenant }, l.maxRunning);
      }
    }),
  );
  const registers = [registry];
  const running = new Gauge({
    name: "agentry_tenant_running_tasks",
    help: "Tasks of the tenant holding a slot (running, or handed a slot and on their way to a worker), read at scrape time.",
    labelNames: ["tenant"] as const,
    registers,
    collect: refresh,
  });
  const waiting = new Gauge({
    name: "agentry_tenant_waiting_tasks",
    help: "Tasks of the tenant submitted and not yet started (including those held back by its maxRunning), read at scrape time.",
    labelNames: ["tenant"] as const,
    registers,
    collect: refresh,
  });
  const maxRunning = new Gauge({
    name: "agentry_tenant_max_running_tasks",
    help: "The tenant's maxRunning cap (tenants without one are absent), read at scrape time.",
    labelNames: ["tenant"] as const,
    registers,
    collect: refresh,
  });
  return { running, waiting, maxRunning };
}
