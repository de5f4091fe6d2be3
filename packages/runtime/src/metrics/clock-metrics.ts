import { Gauge, type Registry } from "prom-client";

/** What {@link registerClockMetrics} reads at scrape time, e.g. an `AgentWorker`. */
export interface ClockState {
  /** Redis's time less this host's clock at the last reading, in ms. */
  readonly clockOffsetMs: number;
  /** True while the worker takes no jobs because its host clock is too far from Redis's. */
  readonly clockSkewPaused: boolean;
}

/**
 * Registers `agentry_clock_offset_seconds` (Redis's time less this host's clock: negative when
 * the host runs ahead) and `agentry_clock_skew_paused` (1 while the worker takes no jobs for it),
 * so an alert can fire on a drifting host before it pauses.
 */
export function registerClockMetrics(registry: Registry, state: ClockState): void {
  const registers = [registry];
  new Gauge({
    name: "agentry_clock_offset_seconds",
    help: "Redis's time less this host's clock at the last reading (negative: this host runs ahead). Leases and expiries use Redis's time; BullMQ's delays use the host's.",
    registers,
    collect() {
      this.set(state.clockOffsetMs / 1000);
    },
  });
  new Gauge({
    name: "agentry_clock_skew_paused",
    help: "1 while the worker takes no jobs because its host clock is further from Redis's than AGENTRY_MAX_CLOCK_SKEW_MS.",
    registers,
    collect() {
      this.set(state.clockSkewPaused ? 1 : 0);
    },
  });
}
