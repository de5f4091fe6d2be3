import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { context, propagation, trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { serializeSpanContext, withAgentSpan } from "./agent-span.js";
import { startTelemetry, tracesUrl } from "./start-telemetry.js";

interface Received {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A local OTLP HTTP receiver: records every request and answers 200 with an empty JSON body. */
async function startReceiver() {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface OtlpJson {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: { name: string; traceId: string; attributes: { key: string }[] }[] }[];
  }[];
}

describe("startTelemetry", () => {
  it("exports spans over OTLP HTTP (JSON) to <endpoint>/v1/traces", async () => {
    const receiver = await startReceiver();
    try {
      const telemetry = startTelemetry({ serviceName: "agentry-otlp-test", otlpEndpoint: receiver.endpoint, serviceVersion: "1.2.3" });
      expect(telemetry.exporting).toBe(true);
      const traceParent = await withAgentSpan({ taskId: "t-otlp", tenant: "acme", userId: "u", sessionId: "s" }, async (span) =>
        serializeSpanContext(span),
      );
      // Shutdown flushes the batch processor.
      await telemetry.shutdown();

      expect(receiver.received.length).toBeGreaterThanOrEqual(1);
      const post = receiver.received[0]!;
      expect(post.method).toBe("POST");
      expect(post.url).toBe("/v1/traces");
      expect(post.headers["content-type"]).toContain("application/json");
      const body = JSON.parse(post.body) as OtlpJson;
      const resource = body.resourceSpans[0]!.resource.attributes;
      expect(resource).toContainEqual({ key: "service.name", value: { stringValue: "agentry-otlp-test" } });
      expect(resource).toContainEqual({ key: "service.version", value: { stringValue: "1.2.3" } });
      const exported = body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
      const agent = exported.find((s) => s.name === "invoke_agent agentry");
      expect(agent).toBeDefined();
      expect(traceParent).toContain(agent!.traceId);
      expect(agent!.attributes.map((a) => a.key)).toContain("agentry.task_id");
    } finally {
      await receiver.close();
    }
  });

  it("without an endpoint still creates real spans and propagates context, exporting nothing", async () => {
    const telemetry = startTelemetry({ serviceName: "agentry-local" });
    try {
      expect(telemetry.exporting).toBe(false);
      await withAgentSpan({ taskId: "t-local", tenant: "acme", userId: "u", sessionId: "s" }, async (span) => {
        await new Promise((resolve) => setImmediate(resolve));
        // Still the active span after an async hop.
        expect(trace.getActiveSpan()?.spanContext().spanId).toBe(span.spanContext().spanId);
        // And it travels as W3C trace context (what BullMQ stores in a job).
        const carrier: Record<string, string> = {};
        propagation.inject(context.active(), carrier);
        expect(carrier.traceparent).toBe(serializeSpanContext(span));
      });
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
