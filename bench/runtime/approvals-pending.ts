/**
 * Throughput of other tasks while tasks wait for approval, against none waiting, same run.
 *
 *   node --conditions=@agentry/source --import tsx bench/runtime/approvals-pending.ts [--pending 1000] [--tasks 2000] [--concurrency 50]
 *
 * Three measurements of the same shape: build the reference worker (`buildWorker`, ScriptedModel
 * at zero latency, every hook on), enqueue N weather tasks (two model calls, one tool call each),
 * start it and time until all N completed.
 *   A1: nothing waiting.   B: after parking P `delete_resource` tasks in staging (the default
 *   policy asks for one approval; each is a delayed job with a pending approval, 1 h expiry).
 *   A2: nothing waiting again (B's keys dropped), to show the drift of a shared machine.
 * The ratio is B ÷ mean(A1, A2). Uses REDIS_URL when set, else starts a private redis-server.
 */
import { createRedis, keySpace } from "../../packages/core/src/index.js";
import { startTelemetry } from "../../packages/runtime/src/index.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import {
  benchApprovers,
  benchClient,
  dropPrefix,
  flags,
  freshPrefix,
  startFullWorker,
  submitTasks,
  weatherPrompt,
} from "../lib/agentry.js";
import { commandLine, emitResult } from "../lib/result.js";
import { round, table } from "../lib/stats.js";

const args = flags({ pending: "1000", tasks: "2000", concurrency: "50" });
const PENDING = Number(args.pending);
const TASKS = Number(args.tasks);
const CONCURRENCY = Number(args.concurrency);
const approvers = benchApprovers();

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Times N weather tasks on a fresh worker; `park` first parks that many approval-waiting tasks. */
async function measure(
  url: string,
  park: number,
  tasks = TASKS,
): Promise<{ perSecond: number; pendingAfter: number; parkSeconds: number; prefix: string }> {
  const prefix = freshPrefix(park > 0 ? "pending" : "none");
  const { client, redis } = await benchClient(url, prefix);
  const pendingKey = keySpace(prefix).key("approvals", "pending");
  let parkSeconds = 0;
  if (park > 0) {
    const t0 = performance.now();
    const parker = await startFullWorker({
      url,
      prefix,
      concurrency: CONCURRENCY,
      approversFileText: approvers.fileText,
    });
    await submitTasks(client, park, (i) => `delete res-${i} in staging`, { offset: 1_000_000 });
    await until(
      async () =>
        (await redis.zcard(pendingKey)) === park &&
        (await client.queue.getJobCounts("delayed")).delayed === park,
      `${park} parked tasks`,
    );
    await parker.built.close();
    parkSeconds = (performance.now() - t0) / 1000;
  }
  const { built, completions } = await startFullWorker({
    url,
    prefix,
    concurrency: CONCURRENCY,
    approversFileText: approvers.fileText,
    start: false,
  });
  await submitTasks(client, tasks, weatherPrompt);
  const t0 = performance.now();
  await built.start();
  await completions.waitFor(tasks);
  const perSecond = tasks / ((performance.now() - t0) / 1000);
  const pendingAfter = await redis.zcard(pendingKey);
  if (completions.failed > 0)
    console.error(`warning: ${completions.failed} failed attempts (${completions.lastFailure ?? ""})`);
  await built.close();
  await client.close();
  await redis.quit();
  return { perSecond, pendingAfter, parkSeconds, prefix };
}

async function main(): Promise<void> {
  const server = await obtainTestRedis();
  const telemetry = startTelemetry({ serviceName: "agentry-bench" });
  const admin = createRedis({ url: server.url });
  try {
    // Warm-up (JIT, connections, Lua script loads): one full round, not measured.
    await dropPrefix(admin, (await measure(server.url, 0)).prefix);
    const a1 = await measure(server.url, 0);
    await dropPrefix(admin, a1.prefix);
    console.error(`  none waiting: ${round(a1.perSecond)} tasks/s`);
    const b = await measure(server.url, PENDING);
    await dropPrefix(admin, b.prefix);
    console.error(
      `  ${b.pendingAfter} waiting: ${round(b.perSecond)} tasks/s (parked ${PENDING} in ${round(b.parkSeconds, 1)} s)`,
    );
    const a2 = await measure(server.url, 0);
    await dropPrefix(admin, a2.prefix);
    const base = (a1.perSecond + a2.perSecond) / 2;
    const ratio = b.perSecond / base;
    console.log(
      `\nOther tasks' throughput while tasks wait for approval: ${TASKS} weather tasks, one in-process worker, concurrency ${CONCURRENCY}, Redis ${server.kind}`,
    );
    console.log(
      table(
        ["", "tasks/s", "approvals pending"],
        [
          ["A1 none waiting", round(a1.perSecond), a1.pendingAfter],
          [`B  ${PENDING} waiting`, round(b.perSecond), b.pendingAfter],
          ["A2 none waiting", round(a2.perSecond), a2.pendingAfter],
        ],
      ),
    );
    console.log(
      `ratio B ÷ mean(A1, A2): ${round(ratio, 3)}; parking ${PENDING} tasks took ${round(b.parkSeconds, 1)} s`,
    );
    emitResult({
      name: "approvals-pending",
      command: commandLine("bench/runtime/approvals-pending.ts", [
        "--pending",
        String(PENDING),
        "--tasks",
        String(TASKS),
        "--concurrency",
        String(CONCURRENCY),
      ]),
      figures: [
        {
          label: "tasks/s, none waiting (A1, A2)",
          value: `${round(a1.perSecond)}, ${round(a2.perSecond)}`,
          unit: "tasks/s",
          note: `${TASKS} weather tasks, concurrency ${CONCURRENCY}`,
        },
        {
          label: `tasks/s, ${PENDING} waiting for approval (B)`,
          value: round(b.perSecond),
          unit: "tasks/s",
          note: `${b.pendingAfter} still pending at the end`,
        },
        {
          label: `ratio ${PENDING} waiting ÷ none waiting`,
          value: round(ratio, 3),
          note: "same run; B ÷ mean(A1, A2)",
        },
        {
          label: `time to park ${PENDING} approval-waiting tasks`,
          value: round(b.parkSeconds, 1),
          unit: "s",
        },
      ],
    });
  } finally {
    await admin.quit();
    await telemetry.shutdown();
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
