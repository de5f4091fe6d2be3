/**
 * Approval resume latency: how long from a signed approval being recorded to the approved tool
 * starting, with about 1,000 approvals pending. N tasks are parked awaiting approval (each a
 * `delete_resource` in staging under the reference policy), plus M more that are approved one
 * at a time (so at least N stay pending throughout); for each approval we time
 *   - decide:          the `ApprovalStore.decide` call (signature check + Lua script + publish),
 *   - return → tool:   from `decide` returning to the tool handler starting,
 *   - approve → tool:  from calling `decide` to the tool handler starting (what an approver waits).
 * The resume path measured: pub/sub event → `promote` → a worker takes the job → checkpoint
 * restored → session turn → signature re-verified → audit append → tool.
 *
 *   node --conditions=@agentry/source --import tsx bench/approvals/resume-latency.ts [--pending 1000] [--approve 200] [--workers 2] [--concurrency 32]
 *
 * Workers are built in this process (`buildWorker`, the reference worker's wiring) with the
 * offline ScriptedModel (zero latency), so the tool start is timestamped with the same clock as
 * the decision. Uses REDIS_URL when set, else starts a private redis-server.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createLogger, createRedis, keySpace } from "../../packages/core/src/index.js";
import { ScriptedModel } from "../../packages/llm/src/index.js";
import { demoRules } from "../../packages/reference/src/demo-rules.js";
import { RedisSessionTurns } from "../../packages/memory/src/index.js";
import { AgentryClient } from "../../packages/runtime/src/index.js";
import { ApprovalStore } from "../../packages/governance/src/index.js";
import { createTestApprovers } from "../../packages/governance/src/testing.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import { buildWorker, type BuiltWorker } from "../../apps/worker/src/build-worker.js";
import { parseWorkerConfig } from "../../apps/worker/src/config.js";
import { deletionsKey } from "../../packages/reference/src/reference-tools.js";
import { P99_MIN_SAMPLES, p99, percentile, sortedCopy } from "../lib/stats.js";

const { values: args } = parseArgs({
  options: {
    pending: { type: "string", default: "1000" },
    approve: { type: "string", default: "200" },
    workers: { type: "string", default: "2" },
    concurrency: { type: "string", default: "32" },
  },
});
const PENDING = Number(args.pending);
const APPROVE = Number(args.approve);
/** Parked in all: the approved ones on top of the N that stay pending throughout. */
const TOTAL = PENDING + APPROVE;
const WORKERS = Number(args.workers);
const CONCURRENCY = Number(args.concurrency);

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Timestamps the tool handler's first Redis write (its `rpush` to the deletions list). */
function watchToolStarts(
  redis: BuiltWorker["redis"],
  prefix: string,
  onStart: (taskId: string, at: number) => void,
): void {
  const key = deletionsKey(prefix);
  const original = redis.rpush.bind(redis) as (...a: unknown[]) => Promise<number>;
  (redis as unknown as { rpush: (...a: unknown[]) => Promise<number> }).rpush = (...a: unknown[]) => {
    if (a[0] === key && typeof a[1] === "string") {
      const at = performance.now();
      onStart((JSON.parse(a[1]) as { taskId: string }).taskId, at);
    }
    return original(...a);
  };
}

async function main(): Promise<void> {
  const server = await obtainTestRedis();
  const prefix = `bench-approvals-${process.pid}`;
  const approvers = createTestApprovers(["alice"]);
  const approversFile = join(mkdtempSync(join(tmpdir(), "agentry-bench-approvals-")), "approvers");
  writeFileSync(approversFile, approvers.fileText);
  const config = parseWorkerConfig({
    REDIS_URL: server.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "scripted",
    AGENTRY_APPROVERS_FILE: approversFile,
    AGENTRY_CONCURRENCY: String(CONCURRENCY),
    AGENTRY_WORKER_PORT: "0",
  });
  const logger = createLogger({ name: "bench-approvals", level: "error" });

  const waiters = new Map<string, (at: number) => void>();
  const workers: BuiltWorker[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const built = await buildWorker(config, { logger, model: new ScriptedModel({ rules: demoRules }) });
    watchToolStarts(built.redis, prefix, (taskId, at) => waiters.get(taskId)?.(at));
    await built.start();
    workers.push(built);
  }

  const conn = createRedis({ url: server.url });
  const client = new AgentryClient({
    url: server.url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis: conn, prefix }),
  });
  const store = new ApprovalStore({
    redis: createRedis({ url: server.url }),
    prefix,
    approverKeys: approvers.keys,
  });

  // 1. Park N + M tasks awaiting approval.
  const parkStart = performance.now();
  const taskIds: string[] = [];
  for (let i = 0; i < TOTAL; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, TOTAL - i) }, (_, j) =>
        client.submit(
          { prompt: `delete res-${i + j} in staging`, sessionId: `bench-${i + j}`, userId: "ops" },
          { tenant: "acme" },
        ),
      ),
    );
    taskIds.push(...batch.map((b) => b.taskId));
  }
  const pendingCount = () => conn.zcard(keySpace(prefix).key("approvals", "pending"));
  await until(
    async () =>
      (await pendingCount()) === TOTAL && (await client.queue.getJobCounts("delayed")).delayed === TOTAL,
    `${TOTAL} parked tasks`,
  );
  const parkMs = performance.now() - parkStart;
  const approvalOf = new Map(
    (await store.list({ status: "pending", limit: TOTAL + 10 })).map((r) => [r.taskId, r.id]),
  );

  // 2. Approve M of them one at a time, each after the previous tool started.
  const chosen = taskIds.slice(0, APPROVE);
  const signed = chosen.map((t) => approvers.sign("alice", approvalOf.get(t) as string, "approve"));
  const decideMs: number[] = [];
  const returnToTool: number[] = [];
  const approveToTool: number[] = [];
  const pendingAtStart = await pendingCount();
  for (const [i, decision] of signed.entries()) {
    const taskId = chosen[i] as string;
    const started = new Promise<number>((resolve) => waiters.set(taskId, resolve));
    const t0 = performance.now();
    await store.decide(decision);
    const t1 = performance.now();
    const toolAt = await Promise.race([
      started,
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error(`tool of ${taskId} did not start in 30 s`)), 30_000).unref(),
      ),
    ]);
    waiters.delete(taskId);
    decideMs.push(t1 - t0);
    returnToTool.push(toolAt - t1);
    approveToTool.push(toolAt - t0);
  }
  const pendingAtEnd = await pendingCount();
  await until(
    async () => (await client.queue.getJobCounts("completed")).completed === APPROVE,
    `${APPROVE} completed tasks`,
    60_000,
  );
  const ranTwice = (await conn.lrange(deletionsKey(prefix), 0, -1)).length - APPROVE;

  const row = (name: string, xs: number[]) => {
    const s = sortedCopy(xs);
    const f = (n: number) => n.toFixed(2).padStart(8);
    const tail = p99(s);
    return `${name.padEnd(18)}${f(percentile(s, 50))}${f(percentile(s, 90))}${tail === undefined ? "n/a".padStart(8) : f(tail)}${f(s[s.length - 1] ?? Number.NaN)}`;
  };
  console.log(
    `\nApproval resume latency (ms), ${APPROVE} approvals one at a time, ${pendingAtStart}→${pendingAtEnd} pending, ${WORKERS} in-process workers × ${CONCURRENCY} slots, ScriptedModel`,
  );
  console.log(
    `${"".padEnd(18)}${"p50".padStart(8)}${"p90".padStart(8)}${"p99".padStart(8)}${"max".padStart(8)}`,
  );
  console.log(row("decide", decideMs));
  console.log(row("return → tool", returnToTool));
  console.log(row("approve → tool", approveToTool));
  if (APPROVE < P99_MIN_SAMPLES) console.log(`(no p99 from fewer than ${P99_MIN_SAMPLES} approvals)`);
  console.log(
    `\nparked ${TOTAL} tasks in ${(parkMs / 1000).toFixed(1)} s; tools run: ${APPROVE + ranTwice} for ${APPROVE} approvals; redis: ${server.kind}`,
  );
  console.log(
    `command: node --conditions=@agentry/source --import tsx bench/approvals/resume-latency.ts --pending ${PENDING} --approve ${APPROVE} --workers ${WORKERS} --concurrency ${CONCURRENCY}`,
  );

  await Promise.all(workers.map((w) => w.close()));
  await client.close();
  await store.redis.quit();
  // Leave a shared REDIS_URL clean.
  const keys = await conn.keys(`${prefix}:*`);
  for (let i = 0; i < keys.length; i += 500) await conn.del(...keys.slice(i, i + 500));
  await conn.quit();
  await server.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
