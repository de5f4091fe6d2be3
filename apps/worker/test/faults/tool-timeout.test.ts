import { afterEach, describe, expect, it } from "vitest";
import { useTestRedis } from "@agentry/testkit";
import { startFaultCluster, toolResultsSent, type FaultCluster } from "./harness.js";

// A tool hangs for good (it even ignores its abort signal). Past its timeout the model gets an
// error tool_result, the task completes, and the worker slot is free for the next task.

const redis = useTestRedis("faults-tool");
let cluster: FaultCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe("tools hanging past their timeout", () => {
  it("answer the model with an error result, complete the task and free the slot", async () => {
    cluster = await startFaultCluster({
      redisUrl: redis.url,
      prefix: redis.freshPrefix(),
      conn: redis.client(),
    });
    const c = cluster;
    // Two slots, three times as many hanging calls: the later tasks only run if slots come back.
    await c.startWorker("hung", {
      AGENTRY_CONCURRENCY: "2",
      AGENTRY_TOOL_DELAY_MS: "600000",
      AGENTRY_TOOL_TIMEOUT_MS: "1000",
    });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await c.submit(`delete stuck-${i} in development`));
    const results = await Promise.all(ids.map((id) => c.client.wait(id, { timeoutMs: 90_000 })));

    for (const r of results) {
      expect(r.steps).toBe(2);
      expect(r.text).toContain("timed out");
    }
    for (const id of ids) expect((await c.client.status(id)).state).toBe("completed");
    const sent = toolResultsSent(c.modelRequests());
    expect(sent).toHaveLength(6);
    for (const s of sent) {
      expect(s.isError).toBe(true);
      expect(s.text).toBe('Tool "delete_resource" timed out after 1000 ms; its outcome is unknown.');
    }
    // Each call started once (its side effect was recorded before the hang) and was not retried.
    expect((await c.deletions()).map((d) => d.taskId).sort()).toEqual([...ids].sort());
    // The timed-out results are journaled: they are part of the task's history, audited as answered.
    const responses = (await c.auditEntries()).filter(
      (e) => e.type === "response" && ids.includes(e.taskId ?? ""),
    );
    expect(responses).toHaveLength(6);
  }, 120_000);
});
