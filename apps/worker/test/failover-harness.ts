import { expect, onTestFinished, vi } from "vitest";
import { createRedis } from "@agentry/core";
import { AuditLog } from "@agentry/governance";
import { AgentryClient, type AgentryClientOptions } from "@agentry/runtime";
import { startWorkerProcess, waitStarted } from "./worker-processes.js";

/**
 * Runs weather tasks on two worker processes (`REDIS_URL=url`) while `failOver` replaces the
 * Redis master (resolving once the replica is the master), then checks that every task
 * completed, none failed, each task's tool ran, none twice on a first claim (the workers' `tool-run`
 * lines), one `action` entry each, and the audit chain written across the failover verifies. Tasks are still running when the master goes.
 */
export async function tasksThroughFailover(options: {
  url: string;
  prefix: string;
  failOver: () => Promise<void>;
  env?: Record<string, string>;
  client?: Pick<AgentryClientOptions, "waitReplicas">;
}): Promise<void> {
  const { url, prefix } = options;
  // Canned answers streamed slowly enough that tasks are still running when the master goes.
  const env = {
    REDIS_URL: url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "scripted",
    AGENTRY_SCRIPTED_DELTA_MS: "30",
    AGENTRY_CONCURRENCY: "2",
    ...options.env,
  };
  const client = new AgentryClient({ url, prefix, ...options.client });
  onTestFinished(() => client.close());
  // A submit can meet the client's fail-fast connection while the master is gone: sent again
  // with the same idempotency key, it is one task.
  const submit = async (from: number, count: number) => {
    const ids: string[] = [];
    for (let i = from; i < from + count; i++) {
      const input = {
        prompt: "What is the weather in Paris?",
        sessionId: `s${i}`,
        idempotencyKey: `fo-${i}`,
      };
      const { taskId } = await vi.waitFor(() => client.submit(input, { tenant: "acme" }), {
        timeout: 60_000,
        interval: 200,
      });
      ids.push(taskId);
    }
    return ids;
  };
  // Submitted before the workers start, so that on a loaded machine they are not all done by the
  // time the first one is: the rest are queued or running when the master goes.
  const before = await submit(0, 20);
  const workers = [startWorkerProcess("fo-1", env), startWorkerProcess("fo-2", env)];
  onTestFinished(async () => void (await Promise.all(workers.map((w) => w.kill()))));
  await Promise.all(workers.map((w) => waitStarted(w)));
  await client.wait(before[0] as string, { timeoutMs: 60_000 });
  const running = await Promise.all(before.map((id) => client.status(id)));
  expect(running.filter((t) => t.state !== "completed").length).toBeGreaterThan(0);

  await options.failOver();

  const after = await submit(20, 20);
  const all = [...before, ...after];
  const settled = await Promise.allSettled(all.map((id) => client.wait(id, { timeoutMs: 120_000 })));
  // Named with the side of the failover they were submitted on, to tell a lost write from a slow one.
  const unfinished = settled.flatMap((r, i) =>
    r.status === "rejected"
      ? [`${i < before.length ? "before" : "after"} ${all[i]}: ${String(r.reason)}`]
      : [],
  );
  expect(unfinished).toEqual([]);
  expect(settled.every((r) => r.status === "fulfilled" && r.value.steps > 0)).toBe(true);
  for (const w of workers) expect(w.output()).not.toContain('"event":"task-failed"');
  // Counted outside Redis too (the workers' logs), where a failover cannot lose the record: each
  // task's tool ran, and no task's tool ran twice on a first claim, which is what a claim the
  // failover lost after it was acknowledged would show. (An idempotent tool runs again on a claim
  // with no result; its claimant may have withdrawn it unrun when the replicas fell short.)
  const runs = new Map<string, { first: number; all: number }>();
  for (const w of workers)
    for (const line of w.output().split("\n")) {
      if (!line.includes('"event":"tool-run"')) continue;
      const { taskId, rerun } = JSON.parse(line) as { taskId: string; rerun: boolean };
      const seen = runs.get(taskId) ?? { first: 0, all: 0 };
      runs.set(taskId, { first: seen.first + (rerun ? 0 : 1), all: seen.all + 1 });
    }
  expect(all.filter((id) => (runs.get(id)?.first ?? 0) > 1)).toEqual([]);
  expect(all.filter((id) => (runs.get(id)?.all ?? 0) === 0)).toEqual([]);

  const redis = createRedis({ url, role: "command" });
  redis.on("error", () => undefined);
  onTestFinished(() => redis.disconnect());
  const audit = new AuditLog({ redis, prefix });
  expect((await audit.verify()).ok).toBe(true);
  // Each task's tool ran once: one action entry per task, across the failover.
  const actions = new Map<string, number>();
  for (const e of await audit.read({ count: 100_000 }))
    if (e.type === "action" && e.taskId) actions.set(e.taskId, (actions.get(e.taskId) ?? 0) + 1);
  expect(all.map((id) => actions.get(id))).toEqual(all.map(() => 1));
}
