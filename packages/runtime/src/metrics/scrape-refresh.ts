import { Counter, type Registry } from "prom-client";
import { withTimeout } from "@agentry/core";

/** The counter of scrape-time reads that failed or timed out, labelled by `collector`. */
export const COLLECT_ERRORS_METRIC = "agentry_metrics_collect_errors_total";

/**
 * Runs one scrape-time read: `read` (skipped when undefined, i.e. not configured) bounded by the
 * refresh's timeout, then `apply` to set the gauges from its value. Resolves either way: a read
 * that fails or times out leaves its gauges as they were and counts under `collector` = `name`.
 */
export type RunCollector = <T>(
  name: string,
  read: (() => Promise<T>) | undefined,
  apply: (value: T) => void,
) => Promise<void>;

/**
 * The `collect` callback of gauges whose values are shared state read at scrape time (Redis, the
 * task queue). prom-client calls every metric's `collect` concurrently on each scrape; all calls
 * made while a refresh is running share it, so one scrape reads each source once however many
 * gauges it feeds, and concurrent scrapes do not pile reads onto a slow Redis.
 *
 * `refresh` starts the reads through its `collect` argument. Each read runs at most `timeoutMs`;
 * one that fails or times out keeps its gauges' previous values and increments
 * `agentry_metrics_collect_errors_total{collector}` when that counter is registered on `registry`
 * (`createMetrics` registers it, with this same kind of callback as its `collect`, so a scrape
 * shows the errors of its own refresh). A scrape never fails because a read did.
 */
export function scrapeTimeRefresh(
  registry: Registry,
  timeoutMs: number,
  refresh: (collect: RunCollector) => Promise<unknown>,
): () => Promise<void> {
  const collect: RunCollector = async (name, read, apply) => {
    if (!read) return;
    try {
      apply(await withTimeout(read(), timeoutMs, `metrics collector ${name}`));
    } catch {
      const errors = registry.getSingleMetric(COLLECT_ERRORS_METRIC);
      if (errors instanceof Counter) errors.inc({ collector: name });
    }
  };
  let inflight: Promise<void> | undefined;
  return () => {
    inflight ??= refresh(collect).then(
      () => {
        inflight = undefined;
      },
      () => {
        inflight = undefined;
      },
    );
    return inflight;
  };
}
