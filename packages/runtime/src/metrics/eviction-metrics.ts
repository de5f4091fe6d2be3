import { Gauge, type Registry } from "prom-client";

/** What {@link registerEvictionMetrics} reads at scrape time, e.g. an `AgentWorker`. */
export interface EvictionMetricsState {
  /** True while the worker takes no jobs because a Redis node that holds its keys evicts keys. */
  readonly evictionPaused: boolean;
}

/**
 * Registers `agentry_redis_eviction_paused`: 1 while the worker takes no jobs because a Redis
 * node that holds Agentry's keys has a `maxmemory-policy` other than `noeviction`.
 */
export function registerEvictionMetrics(registry: Registry, state: EvictionMetricsState): void {
  new Gauge({
    name: "agentry_redis_eviction_paused",
    help: "1 while the worker takes no jobs because a Redis node that holds Agentry's keys evicts keys (maxmemory-policy other than noeviction).",
    registers: [registry],
    collect() {
      this.set(state.evictionPaused ? 1 : 0);
    },
  });
}
