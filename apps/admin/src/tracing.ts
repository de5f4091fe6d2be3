import type { AgentryEnv } from "@agentry/core";
import type { AgentryClientOptions } from "@agentry/runtime";

/** How long the CLI waits for its last OTLP export: a collector that does not answer must not hold the terminal. */
const EXPORT_TIMEOUT_MS = 3_000;

/** Tracing of one CLI command: its span, the trace root that a submitted task's spans join. */
export interface CliTracing {
  /** The bullmq-otel instance for the CLI's queue: `Queue.add` opens a producer span and stores its context in the job. */
  readonly queueTelemetry: NonNullable<AgentryClientOptions["telemetry"]>;
  /** Runs the command inside its span (`agentry <command>`); a throw marks the span as an error and is rethrown. */
  run<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** Names the task the command submitted on its span (`agentry.task_id`, `agentry.session_id`, `agentry.tenant`). */
  recordTask(task: { taskId: string; sessionId: string; tenant: string }): void;
  /** Exports every span and shuts the SDK down; resolves within about the export timeout. Never rejects. */
  shutdown(): Promise<void>;
}

/**
 * Starts tracing for a command that submits work, when the environment names an OTLP endpoint
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `undefined` otherwise.
 * The runtime (and with it the OpenTelemetry SDK) is loaded only then, so other commands and runs
 * without an endpoint start without it.
 */
export async function startCliTracing(env: AgentryEnv, version: string): Promise<CliTracing | undefined> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return undefined;
  const { AgentryAttr, createBullMQTelemetry, markError, startTelemetry } = await import("@agentry/runtime");
  const telemetry = startTelemetry({
    serviceName: "agentry-cli",
    serviceVersion: version,
    otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT,
    otlpTracesEndpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    otlpTimeoutMs: EXPORT_TIMEOUT_MS,
  });
  let annotate: (attributes: Record<string, string>) => void = () => undefined;
  return {
    queueTelemetry: createBullMQTelemetry({ version }),
    run(name, fn) {
      return telemetry.tracer.startActiveSpan(name, async (span) => {
        annotate = (attributes) => span.setAttributes(attributes);
        try {
          return await fn();
        } catch (err) {
          markError(span, err);
          throw err;
        } finally {
          span.end();
        }
      });
    },
    recordTask({ taskId, sessionId, tenant }) {
      annotate({
        [AgentryAttr.taskId]: taskId,
        [AgentryAttr.sessionId]: sessionId,
        [AgentryAttr.tenant]: tenant,
      });
    },
    shutdown: () => telemetry.shutdown(),
  };
}
