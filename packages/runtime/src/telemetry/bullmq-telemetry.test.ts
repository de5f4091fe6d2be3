import { SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { Queue, Worker, type Job } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestRedis } from "@agentry/testkit";
import { withAgentSpan } from "./agent-span.js";
import { createBullMQTelemetry } from "./bullmq-telemetry.js";
import { startTelemetry, type Telemetry } from "./start-telemetry.js";

const redis = useTestRedis("otel-bullmq");
const exporter = new InMemorySpanExporter();
let telemetry: Telemetry;
beforeAll(() => {
  telemetry = startTelemetry({ serviceName: "bullmq-otel-test", exporter });
});
afterAll(() => telemetry.shutdown());

describe("createBullMQTelemetry", () => {
  it("continues the producer's trace in the worker: add → process → invoke_agent", async () => {
    const bullTelemetry = createBullMQTelemetry();
    const prefix = redis.freshPrefix("otel");
    const queue = new Queue("tasks", { connection: redis.client(), prefix, telemetry: bullTelemetry });
    let workerTraceId: string | undefined;
    const worker = new Worker(
      "tasks",
      async (job: Job<{ taskId: string }>) => {
        workerTraceId = trace.getActiveSpan()?.spanContext().traceId;
        await withAgentSpan(
          { taskId: job.data.taskId, tenant: "acme", userId: "u", sessionId: "s" },
          async () => "done",
        );
        return "done";
      },
      { connection: redis.client(), prefix, telemetry: bullTelemetry, autorun: false },
    );
    try {
      const completed = new Promise<void>((resolve, reject) => {
        worker.on("completed", () => resolve());
        worker.on("failed", (_job, err) => reject(err));
      });
      // The producer's own span (e.g. the HTTP request that submits the task).
      await telemetry.tracer.startActiveSpan("submit", async (submit) => {
        await queue.add("agent", { taskId: "t-trace" });
        submit.end();
      });
      void worker.run();
      await completed;
      await telemetry.forceFlush();

      const spans = exporter.getFinishedSpans();
      const submit = spans.find((s) => s.name === "submit")!;
      const add = spans.find((s) => s.kind === SpanKind.PRODUCER && s.name.startsWith("add tasks"));
      const processSpan = spans.find((s) => s.kind === SpanKind.CONSUMER && s.name === "process tasks");
      const agent = spans.find((s) => s.name === "invoke_agent agentry");
      expect(add, "producer span").toBeDefined();
      expect(processSpan, "consumer span").toBeDefined();
      expect(agent, "agent span").toBeDefined();

      const traceId = submit.spanContext().traceId;
      expect(add!.spanContext().traceId).toBe(traceId);
      expect(add!.parentSpanContext?.spanId).toBe(submit.spanContext().spanId);
      expect(processSpan!.spanContext().traceId).toBe(traceId);
      expect(processSpan!.parentSpanContext?.spanId).toBe(add!.spanContext().spanId);
      expect(workerTraceId).toBe(traceId);
      expect(agent!.spanContext().traceId).toBe(traceId);
      expect(agent!.parentSpanContext?.spanId).toBe(processSpan!.spanContext().spanId);
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});
