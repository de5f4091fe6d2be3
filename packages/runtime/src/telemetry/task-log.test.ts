import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import { withAgentSpan } from "./agent-span.js";
import { startTelemetry, type Telemetry } from "./start-telemetry.js";
import { createTaskLogger, startTaskLog } from "./task-log.js";

let telemetry: Telemetry;
beforeAll(() => {
  // No exporter: log correlation must work with in-process tracing alone.
  telemetry = startTelemetry({ serviceName: "log-test" });
});
afterAll(() => telemetry.shutdown());

type Line = Record<string, unknown>;
function capture() {
  const lines: Line[] = [];
  const destination = { write: (chunk: string) => void lines.push(JSON.parse(chunk) as Line) };
  return { lines, destination };
}

const run = { taskId: "t-log", tenant: "acme", userId: "u-1", sessionId: "s-1" };

describe("task logs", () => {
  it("adds trace_id and span_id of the active span to every line, and nothing outside a span", async () => {
    const { lines, destination } = capture();
    const logger = createTaskLogger({ name: "worker", destination });
    logger.info("outside");
    const ids = await withAgentSpan(run, async (span) => {
      await new Promise((resolve) => setImmediate(resolve));
      logger.info("inside");
      return span.spanContext();
    });
    expect(lines[0]).not.toHaveProperty("trace_id");
    expect(lines[1]).toMatchObject({
      msg: "inside",
      trace_id: ids.traceId,
      span_id: ids.spanId,
      trace_flags: "01",
      service: "worker",
    });
  });

  it("keeps the caller's mixin and redacts secrets (core defaults and configured paths)", () => {
    const { lines, destination } = capture();
    const logger = createTaskLogger({
      name: "worker",
      destination,
      redact: ["payload.card"],
      pinoOptions: { mixin: () => ({ region: "eu" }) },
    });
    logger.info({ apiKey: "sk-ant-secret", payload: { card: "4111", city: "Paris" } }, "call");
    expect(lines[0]).toMatchObject({
      region: "eu",
      apiKey: "[redacted]",
      payload: { card: "[redacted]", city: "Paris" },
    });
  });

  it("logs start, completion with duration, and failure with the typed error", async () => {
    const { lines, destination } = capture();
    const logger = createTaskLogger({ name: "worker", destination });
    let now = 1_000;
    const clock = { now: () => now };

    await withAgentSpan(run, async () => {
      const ok = startTaskLog(logger, { ...run, attempt: 1, name: "agent" }, { clock });
      now += 1_250;
      ok.completed({ steps: 3 });
    });
    const failing = startTaskLog(logger, { ...run, attempt: 2 }, { clock });
    now += 40;
    failing.failed(new AgentryError("BUDGET_EXCEEDED", "tenant:acme over budget"));

    expect(lines.map((l) => l.msg)).toEqual([
      "task started",
      "task completed",
      "task started",
      "task failed",
    ]);
    expect(lines[0]).toMatchObject({
      taskId: "t-log",
      tenant: "acme",
      userId: "u-1",
      sessionId: "s-1",
      attempt: 1,
      name: "agent",
    });
    expect(lines[0]).toHaveProperty("trace_id");
    expect(lines[1]).toMatchObject({ durationMs: 1_250, steps: 3, taskId: "t-log" });
    expect(lines[3]).toMatchObject({ level: 50, durationMs: 40, errorCode: "BUDGET_EXCEEDED", attempt: 2 });
    expect((lines[3]!.err as { message: string }).message).toBe("tenant:acme over budget");
  });
});
