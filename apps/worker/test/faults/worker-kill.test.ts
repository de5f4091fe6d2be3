import { afterEach, describe, expect, it } from "vitest";
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
});
