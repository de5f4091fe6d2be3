import { createRequire } from "node:module";
import { context, propagation, trace, type Tracer } from "@opentelemetry/api";
import type * as OtlpHttp from "@opentelemetry/exporter-trace-otlp-http";
import type * as Resources from "@opentelemetry/resources";
import type * as SdkNode from "@opentelemetry/sdk-node";
import type * as SdkTrace from "@opentelemetry/sdk-trace";
import type { SpanExporter, SpanProcessor } from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";

const require = createRequire(import.meta.url);

/**
 * The OpenTelemetry SDK, loaded when telemetry starts rather than when the runtime is imported:
 * the SDK (with the exporters it bundles) takes about half a second to load, which a process that
 * only submits or reads tasks, such as the `agentry` CLI without an OTLP endpoint, never pays.
 */
function loadSdk() {
  return {
    ...(require("@opentelemetry/sdk-node") as typeof SdkNode),
    ...(require("@opentelemetry/sdk-trace") as typeof SdkTrace),
    ...(require("@opentelemetry/resources") as typeof Resources),
    ...(require("@opentelemetry/exporter-trace-otlp-http") as typeof OtlpHttp),
  };
}
type Sdk = ReturnType<typeof loadSdk>;

/** Name of the tracer Agentry's spans come from. */
export const AGENTRY_TRACER_NAME = "agentry";

/** Options for {@link startTelemetry}. */
export interface StartTelemetryOptions {
  /** `service.name` of every span (e.g. `agentry-worker`). */
  serviceName: string;
  /**
   * OTLP HTTP base URL (the value of `OTEL_EXPORTER_OTLP_ENDPOINT`, e.g. `http://jaeger:4318`);
   * spans are POSTed to `<endpoint>/v1/traces` as OTLP JSON. The app reads the environment, this
   * library does not. @defaultValue none: spans are recorded in-process but not exported
   */
  otlpEndpoint?: string;
  /**
   * OTLP HTTP URL for traces, used as is (the value of `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, e.g.
   * `http://collector:4318/v1/traces`). Wins over `otlpEndpoint`, as the OTLP exporter
   * specification has the signal-specific variable win. @defaultValue none
   */
  otlpTracesEndpoint?: string;
  /** Extra HTTP headers for the OTLP exporter (e.g. an auth token). */
  otlpHeaders?: Record<string, string>;
  /**
   * How long one OTLP export may take before it is abandoned; `shutdown()` waits at most about
   * this for the last export. @defaultValue 10_000 (the exporter's default)
   */
  otlpTimeoutMs?: number;
  /** An exporter to use instead of OTLP (tests: `InMemorySpanExporter`). Wins over `otlpEndpoint`. */
  exporter?: SpanExporter;
  /**
   * How spans reach the exporter. `batch` buffers and sends in the background (production);
   * `simple` exports each span as it ends (tests). @defaultValue `simple` with `exporter`, else `batch`
   */
  processor?: "batch" | "simple";
  /** @defaultValue true. When false nothing is registered and `tracer` is a no-op tracer. */
  enabled?: boolean;
  /** `service.version` resource attribute (the app's package version). @defaultValue not set */
  serviceVersion?: string;
}

/** A running telemetry setup. */
export interface Telemetry {
  /** The tracer Agentry's spans come from (the globally registered provider's `agentry` tracer). */
  readonly tracer: Tracer;
  /** True when spans leave the process (an endpoint or an exporter was configured). */
  readonly exporting: boolean;
  /**
   * Exports every span ended so far (the batch buffer, and exports waiting for the asynchronous
   * resource attributes, such as `host.id`, that delay even the simple processor).
   */
  forceFlush(): Promise<void>;
  /**
   * Flushes pending spans, shuts the SDK down and unregisters the global tracer provider, context
   * manager and propagator, so a later {@link startTelemetry} in the same process starts clean.
   * Never rejects: an export failure at shutdown is reported to the OpenTelemetry diag logger only.
   */
  shutdown(): Promise<void>;
}

/**
 * Starts OpenTelemetry tracing for this process: NodeSDK with W3C trace-context propagation, an
 * `AsyncLocalStorage` context manager and, when an endpoint is given, the OTLP HTTP exporter
 * behind a `BatchSpanProcessor` (Jaeger accepts OTLP HTTP on port 4318).
 *
 * Without an endpoint or exporter, tracing still works in-process: spans get real trace and span
 * ids, context propagates (log lines carry `trace_id`, BullMQ jobs carry the trace to workers),
 * but nothing is exported. The SDK's own environment fallbacks (OTLP logs and metrics exporters to
 * localhost) are switched off: only what is passed here is used. `OTEL_SDK_DISABLED=true` is
 * honoured by the SDK and makes this a no-op.
 *
 * Call once per process, before creating queues and workers; the global registration of a second
 * running instance fails (OpenTelemetry allows one global provider), so shut the first one down.
 */
export function startTelemetry(options: StartTelemetryOptions): Telemetry {
  if (options.enabled === false) {
    return {
      tracer: trace.getTracerProvider().getTracer(AGENTRY_TRACER_NAME),
      exporting: false,
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
  }
  const sdkModules = loadSdk();
  const spanProcessor = createSpanProcessor(sdkModules, options);
  const sdk = new sdkModules.NodeSDK({
    serviceName: options.serviceName,
    spanProcessors: [spanProcessor.processor],
    // Empty lists, not undefined: undefined makes the SDK build OTLP exporters from the environment.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
    ...(options.serviceVersion
      ? {
          resource: sdkModules
            .defaultResource()
            .merge(sdkModules.resourceFromAttributes({ [ATTR_SERVICE_VERSION]: options.serviceVersion })),
        }
      : {}),
  });
  sdk.start();
  let stopped: Promise<void> | undefined;
  return {
    tracer: trace.getTracer(AGENTRY_TRACER_NAME, options.serviceVersion),
    exporting: spanProcessor.exporting,
    forceFlush: () => spanProcessor.processor.forceFlush(),
    shutdown() {
      stopped ??= sdk
        .shutdown()
        .catch(() => undefined)
        .finally(() => {
          trace.disable();
          context.disable();
          propagation.disable();
        });
      return stopped;
    },
  };
}

function createSpanProcessor(
  sdk: Sdk,
  options: StartTelemetryOptions,
): { processor: SpanProcessor; exporting: boolean } {
  const exporter: SpanExporter | undefined =
    options.exporter ??
    (options.otlpTracesEndpoint || options.otlpEndpoint
      ? new sdk.OTLPTraceExporter({
          url: options.otlpTracesEndpoint || tracesUrl(options.otlpEndpoint as string),
          headers: options.otlpHeaders ?? {},
          ...(options.otlpTimeoutMs !== undefined ? { timeoutMillis: options.otlpTimeoutMs } : {}),
        })
      : undefined);
  // No exporter: a processor that drops spans still makes the SDK register a real tracer provider,
  // so spans have valid ids and context propagates.
  if (!exporter) return { processor: new sdk.NoopSpanProcessor(), exporting: false };
  const mode = options.processor ?? (options.exporter ? "simple" : "batch");
  return {
    processor:
      mode === "simple"
        ? new sdk.SimpleSpanProcessor({ exporter })
        : new sdk.BatchSpanProcessor({ exporter }),
    exporting: true,
  };
}

/** `http://host:4318` → `http://host:4318/v1/traces` (the OTLP HTTP signal path). */
export function tracesUrl(endpoint: string): string {
  const base = endpoint.replace(/\/+$/, "");
  return base.endsWith("/v1/traces") ? base : `${base}/v1/traces`;
}
