import { context, propagation, trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { startOtlpReceiver } from "@agentry/testkit";
import { serializeSpanContext, withAgentSpan } from "./agent-span.js";
import { startTelemetry, tracesUrl } from "./start-telemetry.js";

describe("startTelemetry", () => {
  it("exports spans over OTLP HTTP (JSON) to <endpoint>/v1/traces", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const telemetry = startTelemetry({
        serviceName: "agentry-otlp-test",
        otlpEndpoint: receiver.endpoint,
        serviceVersion: "1.2.3",
      });
      expect(telemetry.exporting).toBe(true);
      const traceParent = await withAgentSpan(
        { taskId: "t-otlp", tenant: "acme", userId: "u", sessionId: "s" },
        async (span) => serializeSpanContext(span),
      );
      // Shutdown flushes the batch processor.
      await telemetry.shutdown();

      expect(receiver.requests.length).toBeGreaterThanOrEqual(1);
      const post = receiver.requests[0]!;
      expect(post.method).toBe("POST");
      expect(post.url).toBe("/v1/traces");
      expect(post.headers["content-type"]).toContain("application/json");
      const agent = receiver.spans().find((s) => s.name === "invoke_agent agentry");
      expect(agent).toBeDefined();
      expect(agent!.resource).toMatchObject({
        "service.name": "agentry-otlp-test",
        "service.version": "1.2.3",
      });
      expect(traceParent).toContain(agent!.traceId);
      expect(agent!.attributes["agentry.task_id"]).toBe("t-otlp");
    } finally {
      await receiver.close();
    }
  });

  it("posts to the traces endpoint as given, which wins over the base endpoint", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const telemetry = startTelemetry({
        serviceName: "agentry-otlp-traces",
        otlpEndpoint: "http://127.0.0.1:9/never-used",
        otlpTracesEndpoint: `${receiver.endpoint}/custom/traces`,
      });
      telemetry.tracer.startSpan("one").end();
      await telemetry.shutdown();
      expect(receiver.requests.map((r) => `${r.method} ${r.url}`)).toEqual(["POST /custom/traces"]);
    } finally {
      await receiver.close();
    }
  });

  it("without an endpoint still creates real spans and propagates context, exporting nothing", async () => {
    const telemetry = startTelemetry({ serviceName: "agentry-local" });
    try {
      expect(telemetry.exporting).toBe(false);
      await withAgentSpan(
        { taskId: "t-local", tenant: "acme", userId: "u", sessionId: "s" },
        async (span) => {
          await new Promise((resolve) => setImmediate(resolve));
          // Still the active span after an async hop.
          expect(trace.getActiveSpan()?.spanContext().spanId).toBe(span.spanContext().spanId);
          // And it travels as W3C trace context (what BullMQ stores in a job).
          const carrier: Record<string, string> = {};
          propagation.inject(context.active(), carrier);
          expect(carrier.traceparent).toBe(serializeSpanContext(span));
        },
      );
    } finally {
      await telemetry.shutdown();
    }
  });

  it("with enabled: false registers nothing and its spans are not real", async () => {
    const telemetry = startTelemetry({ serviceName: "off", enabled: false });
    const span = telemetry.tracer.startSpan("nothing");
    expect(serializeSpanContext(span)).toBeUndefined();
    span.end();
    await telemetry.shutdown();
  });

  it("builds the OTLP traces URL from the base endpoint", () => {
    expect(tracesUrl("http://jaeger:4318")).toBe("http://jaeger:4318/v1/traces");
    expect(tracesUrl("http://jaeger:4318/")).toBe("http://jaeger:4318/v1/traces");
    expect(tracesUrl("http://collector/otlp/v1/traces")).toBe("http://collector/otlp/v1/traces");
  });
});
