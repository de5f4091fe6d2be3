import { afterEach, describe, expect, it } from "vitest";
import { AgentryError, createLogger, sleep } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AgentryClient } from "../src/client/agentry-client.js";
import { AgentWorker, type TaskHandler } from "../src/worker/agent-worker.js";
import type { AgentTaskResult } from "../src/tasks/catalog.js";

const logger = createLogger({ name: "test", level: "silent" });
const redis = useTestRedis("worker");

const result = (text: string): AgentTaskResult => ({
  text,
  steps: 1,
  usage: { input: 1, output: 1, cacheCreationInput: 0, cacheReadInput: 0 },
  costMicroUsd: 1,
  model: "scripted",
  finishedAt: Date.now(),
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

function setup(handler: TaskHandler, extra: Partial<ConstructorParameters<typeof AgentWorker>[0]> = {}) {
  const prefix = redis.freshPrefix();
  const client = new AgentryClient({ url: redis.url, prefix });
  const worker = new AgentWorker({ url: redis.url, prefix, handler, logger, concurrency: 4, ...extra });
  closers.push(
    () => client.close(),
    () => worker.close(),
  );
  return { client, worker, prefix };
}

describe("AgentWorker + AgentryClient", () => {
  it("runs a submitted task and returns its result through wait and status", async () => {
    const { client, worker } = setup(async (ex) => ({
      type: "completed",
      result: result(`echo: ${ex.payload.prompt}`),
    }));
    await worker.start();
    const { taskId } = await client.submit({ prompt: "hello" }, { tenant: "acme" });
    const res = await client.wait(taskId, { timeoutMs: 10_000 });
    expect(res.text).toBe("echo: hello");
    const status = await client.status(taskId);
    expect(status.state).toBe("completed");
    expect(status.tenant).toBe("acme");
    await expect(client.status(taskId, { tenant: "other" })).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  it("logs how each task ended with success and the agent's name, as JSON lines", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
    const jsonLogger = createLogger({ name: "test", level: "info", destination: sink });
    const { client, worker } = setup(
      async (ex) => {
        if (ex.payload.prompt === "fail") throw new AgentryError("INVALID_INPUT", "no");
        return { type: "completed", result: result("ok") };
      },
      { logger: jsonLogger, agentName: "support-bot" },
    );
    await worker.start();
    const ok = (await client.submit({ prompt: "hello" }, { tenant: "acme" })).taskId;
    const bad = (await client.submit({ prompt: "fail" }, { tenant: "acme" })).taskId;
    await client.wait(ok, { timeoutMs: 10_000 });
    await expect(client.wait(bad, { timeoutMs: 10_000 })).rejects.toMatchObject({ code: "INVALID_INPUT" });
    await expect
      .poll(() => lines.filter((l) => l.event === "task-completed" || l.event === "task-failed").length)
      .toBe(2);
    expect(lines.find((l) => l.event === "task-completed")).toMatchObject({
      taskId: ok,
      agent: "support-bot",
      success: true,
      msg: "agent support-bot completed task",
    });
    expect(lines.find((l) => l.event === "task-failed")).toMatchObject({
      taskId: bad,
      agent: "support-bot",
      success: false,
      code: "INVALID_INPUT",
    });
  });

  it("maps an idempotency key to one task", async () => {
    const { client } = setup(async () => ({ type: "completed", result: result("x") }));
    const a = await client.submit({ prompt: "p", idempotencyKey: "k1" }, { tenant: "acme" });
    const b = await client.submit({ prompt: "p", idempotencyKey: "k1" }, { tenant: "acme" });
    const c = await client.submit({ prompt: "p", idempotencyKey: "k1" }, { tenant: "other" });
    expect(b.taskId).toBe(a.taskId);
    expect(b.deduplicated).toBe(true);
    expect(c.taskId).not.toBe(a.taskId);
    expect(await client.queue.count()).toBe(2);
  });

  it("rejects invalid input with the failing fields and oversized prompts", async () => {
    const { client } = setup(async () => ({ type: "completed", result: result("x") }));
    await expect(
      client.submit({ prompt: "", sessionId: "bad id!" }, { tenant: "acme" }),
    ).rejects.toMatchObject({
      code: "INVALID_INPUT",
      details: {
        fields: expect.arrayContaining([
          expect.objectContaining({ path: "prompt" }),
          expect.objectContaining({ path: "sessionId" }),
        ]),
      },
    });
    await expect(client.submit({ prompt: "x".repeat(200_000) }, { tenant: "acme" })).rejects.toMatchObject({
      code: "PAYLOAD_TOO_LARGE",
    });
    expect(await client.queue.count()).toBe(0);
  });

  it("fails at once with the typed code on a non-retryable error", async () => {
    let calls = 0;
    const { client, worker } = setup(async () => {
      calls++;
      throw new AgentryError("BUDGET_EXCEEDED", "tenant:acme is over budget");
    });
    await worker.start();
    const { taskId } = await client.submit({ prompt: "p" }, { tenant: "acme" });
    await expect(client.wait(taskId, { timeoutMs: 10_000 })).rejects.toMatchObject({
      code: "BUDGET_EXCEEDED",
    });
    expect(calls).toBe(1);
    expect((await client.status(taskId)).error?.code).toBe("BUDGET_EXCEEDED");
  });

  it("retries retryable errors and continues from the checkpoint", async () => {
    const seen: unknown[] = [];
    const { client, worker } = setup(async (ex) => {
      seen.push(ex.checkpoint);
      if (ex.checkpoint === undefined) {
        await ex.saveCheckpoint({ step: 1 });
        throw new AgentryError("PROVIDER_UNAVAILABLE", "502", { retryAfterMs: 50 });
      }
      return { type: "completed", result: result("second try") };
    });
    await worker.start();
    const { taskId } = await client.submit({ prompt: "p" }, { tenant: "acme" });
    expect((await client.wait(taskId, { timeoutMs: 15_000 })).text).toBe("second try");
    expect(seen).toEqual([undefined, { step: 1 }]);
  });

  it("parks a task without holding a slot and resumes it when promoted", async () => {
    const { client, worker } = setup(
      async (ex) => {
        if (!ex.parked)
          return {
            type: "park",
            parked: { reason: "approval", approvalIds: ["appr_1"], until: Date.now() + 60_000 },
          };
        return { type: "completed", result: result("approved") };
      },
      { concurrency: 1 },
    );
    await worker.start();
    const parked = await client.submit({ prompt: "needs approval" }, { tenant: "acme" });
    await expect
      .poll(async () => (await client.status(parked.taskId)).state, { timeout: 10_000 })
      .toBe("awaiting_approval");
    expect((await client.status(parked.taskId)).approvalIds).toEqual(["appr_1"]);
    // The only slot is free: another task runs to completion meanwhile.
    const other = await client.submit({ prompt: "other" }, { tenant: "acme" });
    await expect
      .poll(async () => (await client.status(other.taskId)).state, { timeout: 10_000 })
      .toBe("awaiting_approval");
    expect(await worker.promote(parked.taskId)).toBe(true);
    expect((await client.wait(parked.taskId, { timeoutMs: 10_000 })).text).toBe("approved");
    expect(await worker.promote(parked.taskId)).toBe(false);
  });

  it("gives the handler wake and liveness of other tasks: a task wakes the one it parked behind", async () => {
    const live: Record<string, boolean> = {};
    const { client, worker } = setup(async (ex) => {
      if (ex.payload.prompt === "first") {
        if (!ex.parked)
          return { type: "park", parked: { reason: "session_busy", until: Date.now() + 60_000 } };
        return { type: "completed", result: result("woken") };
      }
      const first = ex.payload.prompt.slice("wake ".length);
      live.before = await ex.isLive(first);
      live.unknown = await ex.isLive("task_unknown");
      expect(await ex.wake(first)).toBe(true);
      return { type: "completed", result: result("woke it") };
    });
    await worker.start();
    const first = await client.submit({ prompt: "first" }, { tenant: "acme" });
    // Parked: back in the delayed set after one attempt.
    await expect
      .poll(
        async () => {
          const status = await client.status(first.taskId);
          return status.state === "queued" && status.attempts === 1;
        },
        { timeout: 10_000 },
      )
      .toBe(true);
    const waker = await client.submit({ prompt: `wake ${first.taskId}` }, { tenant: "acme" });
    expect((await client.wait(waker.taskId, { timeoutMs: 10_000 })).text).toBe("woke it");
    expect((await client.wait(first.taskId, { timeoutMs: 10_000 })).text).toBe("woken");
    expect(live).toEqual({ before: true, unknown: false });
    expect(await worker.isLive(first.taskId)).toBe(false);
  });

  it("runs its reconcilers at start and periodically, past one that throws, and stops them on close", async () => {
    const passes: string[] = [];
    const count = (name: string) => passes.filter((p) => p === name).length;
    const lines: string[] = [];
    const stream = { write: (line: string) => void lines.push(line) };
    const { worker } = setup(async () => ({ type: "completed", result: result("x") }), {
      logger: createLogger({ name: "test", level: "warn", destination: stream }),
      reconcileEveryMs: 100,
      reconcilers: [
        async () => {
          passes.push("broken");
          throw new AgentryError("INTERNAL", "reconcile broke");
        },
        async (control) => {
          passes.push("ok");
          expect(await control.missingTasks(["task_gone"])).toEqual(["task_gone"]);
        },
      ],
    });
    await worker.start();
    // The first pass ran before start resolved.
    expect(passes).toEqual(["broken", "ok"]);
    await expect.poll(() => count("ok"), { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    expect(lines.some((l) => l.includes("reconcile broke"))).toBe(true);
    await worker.close();
    const okAtClose = count("ok");
    // Passes are tied to the worker's life: after close none starts. Another worker's start is the
    // event to wait on, so the check does not rest on a sleep.
    const { worker: next } = setup(async () => ({ type: "completed", result: result("x") }), {
      reconcileEveryMs: 100,
      reconcilers: [async () => void passes.push("next")],
    });
    await next.start();
    await expect.poll(() => count("next"), { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    expect(count("ok")).toBe(okAtClose);
  });

  it("promotes a parked task when a wake source names it, and unsubscribes on close", async () => {
    let emit: ((taskId: string) => void) | undefined;
    let unsubscribed = false;
    const { client, worker } = setup(
      async (ex) => {
        if (!ex.parked)
          return {
            type: "park",
            parked: { reason: "approval", approvalIds: ["appr_1"], until: Date.now() + 60_000 },
          };
        return { type: "completed", result: result("approved") };
      },
      {
        wakeSources: [
          async (wake) => {
            emit = wake;
            return async () => void (unsubscribed = true);
          },
        ],
      },
    );
    await worker.start();
    const parked = await client.submit({ prompt: "needs approval" }, { tenant: "acme" });
    await expect
      .poll(async () => (await client.status(parked.taskId)).state, { timeout: 10_000 })
      .toBe("awaiting_approval");
    emit?.(parked.taskId);
    expect((await client.wait(parked.taskId, { timeoutMs: 10_000 })).text).toBe("approved");
    await worker.close();
    expect(unsubscribed).toBe(true);
  });

  it("rate-limits the whole queue on a provider 429: no task starts on any worker until retry-after has passed, and none fails", async () => {
    const RETRY_AFTER_MS = 1_500;
    const prefix = redis.freshPrefix();
    const client = new AgentryClient({ url: redis.url, prefix });
    closers.push(() => client.close());
    // How long the queue stays paused by a 429: the limiter's TTL once its count is at the
    // workers' limiter max, which is what a 429's `queue.rateLimit` sets (0 when not paused).
    const pausedForMs = () => client.queue.getRateLimitTtl(Number.MAX_SAFE_INTEGER);
    // Every attempt's start, with the pause as the attempt saw it.
    const starts: { prompt: string; at: number; limiterTtlMs: number }[] = [];
    let limitedAt: number | undefined;
    const handler: TaskHandler = async (ex) => {
      starts.push({ prompt: ex.payload.prompt, at: Date.now(), limiterTtlMs: await pausedForMs() });
      if (ex.payload.prompt === "first" && limitedAt === undefined) {
        limitedAt = Date.now();
        throw new AgentryError("PROVIDER_RATE_LIMITED", "429", { retryAfterMs: RETRY_AFTER_MS });
      }
      return { type: "completed", result: result(`done: ${ex.payload.prompt}`) };
    };
    // Two workers with free slots: a per-worker pause would let the other one take the next tasks.
    const workers = [1, 2].map(
      () => new AgentWorker({ url: redis.url, prefix, logger, handler, concurrency: 4 }),
    );
    closers.push(...workers.map((w) => () => w.close()));
    await Promise.all(workers.map((w) => w.start()));

    const first = await client.submit({ prompt: "first" }, { tenant: "acme" });
    await expect.poll(pausedForMs, { timeout: 10_000, interval: 20 }).toBeGreaterThan(0);
    // Submitted while the queue is paused: they wait although eight slots are free.
    const others = await Promise.all(
      ["second", "third", "fourth", "fifth"].map((prompt) => client.submit({ prompt }, { tenant: "acme" })),
    );
    expect(await client.queue.getActiveCount()).toBe(0);

    const results = await Promise.all(
      [first, ...others].map(({ taskId }) => client.wait(taskId, { timeoutMs: 30_000 })),
    );
    expect(results.map((r) => r.text)).toEqual(
      ["first", "second", "third", "fourth", "fifth"].map((p) => `done: ${p}`),
    );
    // The 429 was the first start; every later start (the retry and the four others) came only
    // once the limiter had lapsed, never inside the retry-after window.
    expect(starts[0]).toMatchObject({ prompt: "first" });
    const later = starts.slice(1);
    expect(later.map((s) => s.prompt).sort()).toEqual(["fifth", "first", "fourth", "second", "third"]);
    for (const s of later) {
      expect(s.limiterTtlMs, s.prompt).toBeLessThanOrEqual(0);
      expect(s.at - (limitedAt as number), s.prompt).toBeGreaterThanOrEqual(RETRY_AFTER_MS);
    }
    // The rate limit used no attempt: the task failed nothing and started twice.
    const status = await client.status(first.taskId);
    expect(status.error).toBeUndefined();
    expect(status.attempts).toBe(2);
  });

  it("cancels a running task", async () => {
    const { client, worker } = setup(async (ex) => {
      await sleep(30_000, ex.signal);
      return { type: "completed", result: result("never") };
    });
    await worker.start();
    const { taskId } = await client.submit({ prompt: "p" }, { tenant: "acme" });
    await expect.poll(async () => (await client.status(taskId)).state, { timeout: 10_000 }).toBe("running");
    await client.cancel(taskId);
    await expect(client.wait(taskId, { timeoutMs: 10_000 })).rejects.toMatchObject({ code: "CANCELLED" });
  });

  it("hands running tasks back to the queue on shutdown after the grace period", async () => {
    const prefix = redis.freshPrefix();
    const client = new AgentryClient({ url: redis.url, prefix });
    closers.push(() => client.close());
    const first = new AgentWorker({
      url: redis.url,
      prefix,
      logger,
      shutdownGraceMs: 200,
      handler: async (ex) => {
        await ex.saveCheckpoint({ from: "first" });
        await sleep(60_000, ex.signal);
        return { type: "completed", result: result("first") };
      },
    });
    await first.start();
    const { taskId } = await client.submit({ prompt: "p" }, { tenant: "acme" });
    await expect.poll(async () => (await client.status(taskId)).state, { timeout: 10_000 }).toBe("running");
    await first.close();
    expect((await client.status(taskId)).state).toBe("queued");
    const second = new AgentWorker({
      url: redis.url,
      prefix,
      logger,
      handler: async (ex) => ({
        type: "completed",
        result: result(`resumed from ${(ex.checkpoint as { from: string }).from}`),
      }),
    });
    closers.push(() => second.close());
    await second.start();
    expect((await client.wait(taskId, { timeoutMs: 10_000 })).text).toBe("resumed from first");
  });

  it("reports health", async () => {
    const { worker } = setup(async () => ({ type: "completed", result: result("x") }));
    await worker.start();
    const health = await worker.health();
    expect(health).toMatchObject({ ok: true, redis: true, running: true, activeJobs: 0 });
    await worker.close();
    expect((await worker.health()).ok).toBe(false);
  });

  it("caps concurrency across all workers with the global limit", async () => {
    const prefix = redis.freshPrefix();
    const client = new AgentryClient({ url: redis.url, prefix });
    let running = 0;
    let peak = 0;
    const handler: TaskHandler = async () => {
      running++;
      peak = Math.max(peak, running);
      await sleep(100);
      running--;
      return { type: "completed", result: result("ok") };
    };
    const workers = [1, 2].map(
      () =>
        new AgentWorker({ url: redis.url, prefix, logger, handler, concurrency: 4, globalConcurrency: 2 }),
    );
    closers.push(() => client.close(), ...workers.map((w) => () => w.close()));
    await Promise.all(workers.map((w) => w.start()));
    const ids = await Promise.all(
      Array.from({ length: 10 }, (_, i) => client.submit({ prompt: `p${i}` }, { tenant: "acme" })),
    );
    await Promise.all(ids.map(({ taskId }) => client.wait(taskId, { timeoutMs: 30_000 })));
    expect(peak).toBeLessThanOrEqual(2);
    expect(peak).toBeGreaterThanOrEqual(1);
  });

  it("reports unhealthy when a running task stops making progress", async () => {
    const { client, worker } = setup(
      async (ex) => {
        await sleep(30_000, ex.signal);
        return { type: "completed", result: result("never") };
      },
      { progressTimeoutMs: 200 },
    );
    await worker.start();
    const { taskId } = await client.submit({ prompt: "stuck" }, { tenant: "acme" });
    await expect.poll(async () => (await client.status(taskId)).state, { timeout: 10_000 }).toBe("running");
    await expect.poll(async () => (await worker.health()).ok, { timeout: 10_000 }).toBe(false);
    expect((await worker.health()).reasons.join(" ")).toMatch(/no progress/);
    await client.cancel(taskId);
  });

  it("fails fast when Redis is down instead of hanging", async () => {
    const client = new AgentryClient({ url: "redis://127.0.0.1:1", prefix: "nowhere" });
    closers.push(() => client.close());
    await expect(client.submit({ prompt: "p" }, { tenant: "acme" })).rejects.toMatchObject({
      code: "REDIS_UNAVAILABLE",
    });
  });
});
