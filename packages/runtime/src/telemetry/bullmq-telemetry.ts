import { BullMQOtel } from "bullmq-otel";

/** Options for {@link createBullMQTelemetry}. */
export interface BullMQTelemetryOptions {
  /** @defaultValue `agentry-bullmq` */
  tracerName?: string;
  /** Version reported by the tracer (and meter). */
  version?: string;
  /**
   * Let BullMQ record its own OpenTelemetry metrics (job counts and durations) on the global meter.
   * Agentry's `/metrics` does not need them. @defaultValue false
   */
  enableMetrics?: boolean;
}

/**
 * The `telemetry` option for BullMQ `Queue`, `Worker` and `FlowProducer`. With it, `Queue.add`
 * opens a `add <queue>.<job>` producer span and stores its context in the job; the worker opens a
 * `process <queue>` consumer span as its child and runs the processor inside it, so a task's trace
 * continues from the producer into the worker (and every span the processor opens joins it).
 *
 * It talks to the global OpenTelemetry API, so it may be created before {@link startTelemetry};
 * without a registered provider its spans are no-ops and nothing propagates.
 */
export function createBullMQTelemetry(options: BullMQTelemetryOptions = {}): BullMQOtel {
  return new BullMQOtel({
    tracerName: options.tracerName ?? "agentry-bullmq",
    ...(options.version !== undefined ? { version: options.version } : {}),
    enableMetrics: options.enableMetrics ?? false,
  });
}
