import { readFileSync } from "node:fs";
import { Queue, Worker } from "bullmq";
import { afterAll, describe, expect, it } from "vitest";
import type { ModelRequest, ModelResponse } from "@agentry/llm";
import { useTestRedis } from "@agentry/testkit";
import { createMetricsHooks } from "./metrics-hooks.js";
import { lintExposition } from "./lint-exposition.js";
import {
  createMetrics,
  queueDepthOf,
  QUEUE_DEPTH_STATES,
  type BudgetRemainingSample,
  type QueueDepth,
} from "./metrics.js";

const redis = useTestRedis("metrics");
const queues: Queue[] = [];
afterAll(async () => {
  for (const q of queues) await q.close();
});

const run = { taskId: "t-1", tenant: "acme", userId: "u", sessionId: "s" };
const request: ModelRequest = {
  model: "claude-sonnet-4-5",
  messages: [{ role: "user", content: "hi" }],
  maxTokens: 256,
};
const response: ModelResponse = {
  id: "msg_1",
  model: "claude-sonnet-4-5-20250929",
  content: [{ type: "text", text: "ok" }],
  stopReason: "end_turn",
  usage: { input: 100, output: 20, cacheCreationInput: 30, cacheReadInput: 50 },
};

/** The value of one sample line, e.g. `agentry_tokens_total{tenant="acme",kind="input"}`. */
function sample(text: string, nameAndLabels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${nameAndLabels} `));
  return line === undefined ? undefined : Number(line.slice(nameAndLabels.length + 1));
}

describe("createMetrics + createMetricsHooks", () => {
  it("exposes every documented metric with the values the hooks, the worker and the collectors gave", async () => {
    const prefix = redis.freshPrefix("mq");
    const queue = new Queue("tasks", { connection: redis.client(), prefix });
    queues.push(queue);
    await queue.add("agent", { prompt: "a" });
    await queue.add("agent", { prompt: "b" }, { delay: 60_000 });
    await queue.add("agent", { prompt: "c" }, { priority: 5 });
    // A finished job BullMQ retains: not queue depth.
    await queue.add("agent", { prompt: "d" });
    const worker = new Worker("tasks", async () => "done", {
      connection: redis.client(),
      prefix,
      autorun: false,
    });
    const job = (await worker.getNextJob("token-1"))!;
    await job.moveToCompleted("done", "token-1", false);
    await worker.close();
    expect(await queue.getJobCounts("completed")).toEqual({ completed: 1 });

    const metrics = createMetrics({
      collectors: {
        queueDepth: queueDepthOf(queue),
        budgetRemaining: async () => [
          { scope: "global", tokens: 9_000, costMicroUsd: null },
          { scope: "tenant:acme", tokens: null, costMicroUsd: 1_500_000 },
        ],
        approvalsPending: async () => 2,
        budgetAllowances: async () => [
          { kind: "global", open: 2, granted: { tokens: 8_000, costMicroUsd: 250_000 } },
        ],
      },
    });
    const hooks = createMetricsHooks(metrics, { pricing: (_m, u) => u.input * 3 + u.output * 15 });
    await hooks.afterModelCall({ run, step: 1, request, response, durationMs: 1_500 });
    await hooks.onModelCallError({ run, step: 2, request, error: new Error("overloaded"), sent: true });
    // A call stopped before it was sent is not a model call.
    await hooks.onModelCallError({ run, step: 3, request, error: new Error("refused"), sent: false });
    const call = { type: "tool_use" as const, id: "toolu_1", name: "delete_resource", input: {} };
    await hooks.afterToolCall({
      run,
      step: 1,
      call,
      result: { type: "tool_result", toolUseId: "toolu_1", content: "denied", isError: true },
      durationMs: 1,
      decision: { type: "deny", reason: "no" },
    });
    metrics.recordToolCall("delete_resource", "suspend");
    metrics.recordTask({ outcome: "completed", tenant: "acme", durationMs: 2_500 });

    const text = await metrics.metricsText();
    expect(metrics.contentType).toContain("text/plain");

    expect(sample(text, 'agentry_tasks_total{outcome="completed",tenant="acme"}')).toBe(1);
    expect(sample(text, 'agentry_task_duration_seconds_count{outcome="completed"}')).toBe(1);
    expect(sample(text, 'agentry_task_duration_seconds_sum{outcome="completed"}')).toBe(2.5);
    expect(sample(text, 'agentry_model_calls_total{model="claude-sonnet-4-5",outcome="ok"}')).toBe(1);
    expect(sample(text, 'agentry_model_calls_total{model="claude-sonnet-4-5",outcome="error"}')).toBe(1);
    expect(sample(text, 'agentry_model_call_duration_seconds_sum{model="claude-sonnet-4-5"}')).toBe(1.5);
    expect(sample(text, 'agentry_tokens_total{tenant="acme",kind="input"}')).toBe(100);
    expect(sample(text, 'agentry_tokens_total{tenant="acme",kind="output"}')).toBe(20);
    expect(sample(text, 'agentry_tokens_total{tenant="acme",kind="cache_creation"}')).toBe(30);
    expect(sample(text, 'agentry_tokens_total{tenant="acme",kind="cache_read"}')).toBe(50);
    // 100 × 3 + 20 × 15 = 600 micro-USD.
    expect(sample(text, 'agentry_cost_usd_total{tenant="acme"}')).toBe(0.0006);
    expect(sample(text, 'agentry_tool_calls_total{tool="delete_resource",decision="deny"}')).toBe(1);
    expect(sample(text, 'agentry_tool_calls_total{tool="delete_resource",decision="suspend"}')).toBe(1);
    expect(sample(text, 'agentry_budget_remaining_tokens{scope="global"}')).toBe(9_000);
    expect(sample(text, 'agentry_budget_remaining_usd{scope="tenant:acme"}')).toBe(1.5);
    expect(sample(text, 'agentry_budget_allowances_open{kind="global"}')).toBe(2);
    expect(sample(text, 'agentry_budget_allowance_granted_tokens{kind="global"}')).toBe(8_000);
    expect(sample(text, 'agentry_budget_allowance_granted_usd{kind="global"}')).toBe(0.25);
    // A kind with none held reads 0 (the series stays between draws).
    expect(sample(text, 'agentry_budget_allowances_open{kind="session"}')).toBe(0);
    // A dimension without a limit has no sample.
    expect(text).not.toContain('agentry_budget_remaining_usd{scope="global"}');
    expect(text).not.toContain('agentry_budget_remaining_tokens{scope="tenant:acme"}');
    // Jobs still to finish, one series per depth state; the completed job is not counted.
    expect(sample(text, 'agentry_queue_depth{state="waiting",shard="0"}')).toBe(1);
    expect(sample(text, 'agentry_queue_depth{state="delayed",shard="0"}')).toBe(1);
    expect(sample(text, 'agentry_queue_depth{state="prioritized",shard="0"}')).toBe(1);
    expect(sample(text, 'agentry_queue_depth{state="active",shard="0"}')).toBe(0);
    expect(text.match(/^agentry_queue_depth\{/gm)).toHaveLength(QUEUE_DEPTH_STATES.length);
    expect(sample(text, "agentry_approvals_pending")).toBe(2);
    expect(text).toContain("process_cpu_seconds_total");
    // The exposition passes the promtool rules and Agentry's unit conventions.
    expect(lintExposition(text)).toEqual([]);

    // Every metric the README documents is exposed (the fair-share and clock gauges by their own register functions, tested beside them).
    const readme = readFileSync(new URL("./README.md", import.meta.url), "utf8");
    const documented = [...readme.matchAll(/^\| `(agentry_[a-z_]+)` +\|.*$/gm)]
      .filter(
        (m) =>
          !m[0].includes("registerTenantLoadMetrics") &&
          !m[0].includes("registerClockMetrics") &&
          !m[0].includes("registerEvictionMetrics"),
      )
      .map((m) => m[1]!);
    expect(documented.length).toBeGreaterThanOrEqual(12);
    for (const name of documented) expect(text, name).toContain(`# TYPE ${name} `);
  });

  it("keeps serving /metrics when a collector fails, counting the failure", async () => {
    let healthy = true;
    const metrics = createMetrics({
      defaultMetrics: false,
      collectTimeoutMs: 200,
      collectors: {
        approvalsPending: async () => {
          if (!healthy) throw new Error("redis down");
          return 3;
        },
        queueDepth: () => new Promise<QueueDepth>(() => undefined), // never answers
      },
    });
    expect(sample(await metrics.metricsText(), "agentry_approvals_pending")).toBe(3);
    healthy = false;
    const text = await metrics.metricsText();
    expect(sample(text, "agentry_approvals_pending")).toBe(3);
    expect(sample(text, 'agentry_metrics_collect_errors_total{collector="approvals_pending"}')).toBe(1);
    expect(sample(text, 'agentry_metrics_collect_errors_total{collector="queue_depth"}')).toBe(2);
  });

  it("drops budget scopes the collector no longer reports", async () => {
    let scopes: BudgetRemainingSample[] = [
      { scope: "tenant:acme:session:a", tokens: 10, costMicroUsd: null },
      { scope: "tenant:acme:session:b", tokens: 20, costMicroUsd: null },
    ];
    const metrics = createMetrics({
      defaultMetrics: false,
      collectors: { budgetRemaining: async () => scopes },
    });
    expect(await metrics.metricsText()).toContain('scope="tenant:acme:session:a"');
    scopes = [{ scope: "tenant:acme:session:b", tokens: 5, costMicroUsd: null }];
    const text = await metrics.metricsText();
    expect(text).not.toContain('scope="tenant:acme:session:a"');
    expect(sample(text, 'agentry_budget_remaining_tokens{scope="tenant:acme:session:b"}')).toBe(5);
  });
});
