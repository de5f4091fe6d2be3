import { afterEach, describe, expect, it } from "vitest";
import type { RecordedRequest } from "@agentry/testkit";
import { INTERRUPTED_TOOL_MESSAGE } from "@agentry/agent";
import { useTestRedis } from "@agentry/testkit";
import { budgetEntries, demo, startFaultCluster, toolResultsSent, type FaultCluster } from "./harness.js";

// A worker process dies with SIGKILL (no shutdown code runs) in the middle of a task. Another
// worker takes the task over once its lock lapses; nothing may run twice or be charged wrongly.

const redis = useTestRedis("faults-kill");
let cluster: FaultCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe("worker SIGKILL", () => {
  it("mid model call: the task completes once, the dead attempt's reservation is settled at its reserved amount and audited", async () => {
    let answered = 0;
    cluster = await startFaultCluster({
      redisUrl: redis.url,
      prefix: redis.freshPrefix(),
      conn: redis.client(),
      // The first model call never answers in time: its worker is killed while waiting.
      reply: (req) => (++answered === 1 ? demo(req, { delayMs: 120_000 }) : demo(req)),
    });
    const c = cluster;
    const doomed = await c.startWorker("doomed");
    const taskId = await c.submit("delete victim-1 in development");
    await expect.poll(() => c.modelRequests().length, { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
    await doomed.kill();
    await c.startWorker("survivor");

    const result = await c.client.wait(taskId, { timeoutMs: 90_000 });
    expect(result.steps).toBe(2);
    expect((await c.client.status(taskId)).state).toBe("completed");
    // The tool ran once, and the task's response was written once.
    expect((await c.deletions()).map((d) => d.taskId)).toEqual([taskId]);
    expect((await c.auditEntries()).filter((e) => e.taskId === taskId && e.type === "response")).toHaveLength(
      1,
    );

    // The reaper (every 5 s on the survivor) settles the dead reservation once its lease ran out.
    await expect
      .poll(
        async () =>
          budgetEntries(await c.auditEntries(), taskId).filter((e) => e.data.event === "lease-expired")
            .length,
        { timeout: 45_000 },
      )
      .toBe(1);
    const budget = budgetEntries(await c.auditEntries(), taskId);
    const reserved = budget.filter((e) => e.data.event === "reserved");
    const settled = budget.filter((e) => e.data.event === "settled");
    const expired = budget.filter((e) => e.data.event === "lease-expired");
    // Three reservations: the dead attempt's first call, then the survivor's two calls.
    expect(reserved).toHaveLength(3);
    expect(settled).toHaveLength(2);
    const dead = reserved.find((r) => !settled.some((s) => s.data.reservationId === r.data.reservationId));
    expect(expired[0]?.data.reservationId).toBe(dead?.data.reservationId);
    expect(expired[0]?.data.amount).toEqual(dead?.data.amount);

    const stats = await c.ledger.getStats("tenant:acme");
    expect(stats.reserved.tokens).toBe(0);
    expect(stats.reserved.costMicroUsd).toBe(0);
    const settledTokens = settled.reduce((s, e) => s + (e.data.tokens ?? 0), 0);
    const settledCost = settled.reduce((s, e) => s + (e.data.costMicroUsd ?? 0), 0);
    // Never under-count: used = what the survivor's calls really cost + the dead call at its worst case.
    expect(stats.used.tokens).toBe(settledTokens + (dead?.data.amount?.tokens ?? Number.NaN));
    expect(stats.used.costMicroUsd).toBe(settledCost + (dead?.data.amount?.costMicroUsd ?? Number.NaN));
    expect((await c.audit.verify()).ok).toBe(true);
  }, 150_000);

  it("mid tool call: the side effect happens once and the retry tells the model the call was interrupted", async () => {
    cluster = await startFaultCluster({
      redisUrl: redis.url,
      prefix: redis.freshPrefix(),
      conn: redis.client(),
    });
    const c = cluster;
    // This worker's delete_resource records its deletion, then hangs: it dies right there. Its
    // claim on the call lasts its tool timeout (8 s) plus a margin: until then the survivor waits
    // for a result the claimant might still record, then reports the call as interrupted.
    const doomed = await c.startWorker("doomed", {
      AGENTRY_TOOL_DELAY_MS: "600000",
      AGENTRY_TOOL_TIMEOUT_MS: "8000",
    });
    const taskId = await c.submit("delete db-7 in development");
    await expect.poll(async () => (await c.deletions()).length, { timeout: 30_000 }).toBe(1);
    await doomed.kill();
    await c.startWorker("survivor");

    const result = await c.client.wait(taskId, { timeoutMs: 90_000 });
    expect((await c.client.status(taskId)).state).toBe("completed");
    // No tool ran twice: still exactly one deletion.
    const deletions = await c.deletions();
    expect(deletions).toHaveLength(1);
    expect(deletions[0]?.taskId).toBe(taskId);
    // The retry did not re-run the call; the model was told its outcome is unknown.
    const results = toolResultsSent(c.modelRequests());
    expect(results).toEqual([
      { toolUseId: deletions[0]?.toolUseId, text: INTERRUPTED_TOOL_MESSAGE, isError: true },
    ]);
    expect(result.text).toContain("interrupted");
    expect((await c.auditEntries()).filter((e) => e.taskId === taskId && e.type === "response")).toHaveLength(
      1,
    );
    const stats = await c.ledger.getStats("tenant:acme");
    expect(stats.reserved.tokens).toBe(0);
    expect((await c.audit.verify()).ok).toBe(true);
  }, 150_000);

  it("a task whose every attempt dies is failed by the queue: its failure audited once, its session's turn handed on", async () => {
    const hangs = (req: RecordedRequest) => {
      const first = req.body.messages?.[0];
      return typeof first?.content === "string" && first.content.includes("(hangs)");
    };
    cluster = await startFaultCluster({
      redisUrl: redis.url,
      prefix: redis.freshPrefix(),
      conn: redis.client(),
      // The poison task's model call never answers: every worker that takes it is killed waiting.
      reply: (req) => (hangs(req) ? demo(req, { delayMs: 600_000 }) : demo(req)),
    });
    const c = cluster;
    const sessionId = "poisoned";
    const submit = async (prompt: string) =>
      (await c.client.submit({ prompt, sessionId }, { tenant: "acme" })).taskId;
    const poison = await submit("What's the weather in Oslo? (hangs)");
    const next = await submit("What's the weather in Lima?");
    // maxStalledCount is 3: after the fourth stall BullMQ fails the task for the next worker
    // that takes it, before any handler runs.
    for (let attempt = 1; attempt <= 4; attempt++) {
      const doomed = await c.startWorker(`doomed-${attempt}`);
      await expect
        .poll(() => c.modelRequests().filter(hangs).length, { timeout: 60_000 })
        .toBeGreaterThanOrEqual(attempt);
      await doomed.kill();
    }
    await c.startWorker("survivor");
    await expect.poll(async () => (await c.client.status(poison)).state, { timeout: 60_000 }).toBe("failed");
    expect(c.modelRequests().filter(hangs)).toHaveLength(4);

    // Its failure is audited once, as a failure its handler had met would be.
    await expect
      .poll(async () => (await c.auditEntries()).filter((e) => e.taskId === poison && e.type === "failure"), {
        timeout: 15_000,
      })
      .toHaveLength(1);
    const [failure] = (await c.auditEntries()).filter((e) => e.taskId === poison && e.type === "failure");
    expect(failure).toMatchObject({ tenant: "acme", sessionId, actor: "survivor" });
    expect((failure?.data as { message: string }).message).toContain("job stalled more than allowable limit");
    expect((await c.audit.verify()).ok).toBe(true);
    const logged = c.workers.flatMap((w) =>
      w
        .output()
        .split("\n")
        .filter((l) => l.includes('"event":"task-failed-by-queue"')),
    );
    expect(logged).toHaveLength(1);
    expect(JSON.parse(logged[0] as string)).toMatchObject({ taskId: poison, kind: "stalled", level: 50 });

    // The session's turn is handed on at once: the dead attempts' lease (30 s, renewed until the
    // last kill) is ended with the failure, not left to run out while the next task waits.
    const leases = async () => {
      const [, keys] = await c.conn.scan(
        "0",
        "MATCH",
        `${c.prefix}:turns:*${sessionId}*:lease`,
        "COUNT",
        10_000,
      );
      return Promise.all(keys.map((k) => c.conn.hget(k, "taskId")));
    };
    await expect.poll(async () => (await leases()).includes(poison), { timeout: 10_000 }).toBe(false);
    expect((await c.client.wait(next, { timeoutMs: 60_000 })).text).toMatch(
      /^In Lima it is -?\d+°C and [a-z ]+\.$/,
    );
  }, 240_000);
});
