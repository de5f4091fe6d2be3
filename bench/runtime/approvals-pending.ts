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
 * The ratio is B ÷ mean(A1, A2). A timed run lasts a few seconds, shorter than the worker's
 * default reconcile interval (5 s), so every worker here reconciles every `--reconcile-ms`
 * (500): B then pays for the passes over its pending approvals as a long-running worker would.
 * The passes that ran inside each timed window are counted and printed.
 * Uses REDIS_URL when set, else starts a private redis-server.
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

const args = flags({ pending: "1000", tasks: "2000", concurrency: "50", "reconcile-ms": "500" });
const PENDING = Number(args.pending);
const TASKS = Number(args.tasks);
const CONCURRENCY = Number(args.concurrency);
const RECONCILE_MS = Number(args["reconcile-ms"]);
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
): Promise<{
  perSecond: number;
  seconds: number;
  reconciles: number;
  pendingAfter: number;
  parkSeconds: number;
  prefix: string;
}> {
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
    reconcileEveryMs: RECONCILE_MS,
  });
  // Every reconcile pass of the approvals starts with `expireDue`: counting its calls counts the passes.
  let reconciles = 0;
  const expireDue = built.approvals.expireDue.bind(built.approvals);
  built.approvals.expireDue = (...a) => {
    reconciles += 1;
    return expireDue(...a);
  };
  await submitTasks(client, tasks, weatherPrompt);
  const t0 = performance.now();
  await built.start();
  await completions.waitFor(tasks);
  const seconds = (performance.now() - t0) / 1000;
  const perSecond = tasks / seconds;
  const reconcilesInWindow = reconciles;
  const pendingAfter = await redis.zcard(pendingKey);
  if (completions.failed > 0)
    console.error(`warning: ${completions.failed} failed attempts (${completions.lastFailure ?? ""})`);
  await built.close();
  await client.close();
  await redis.quit();
  return { perSecond, seconds, reconciles: reconcilesInWindow, pendingAfter, parkSeconds, prefix };
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
        ["", "tasks/s", "approvals pending", "timed s", "reconcile passes"],
        [a1, b, a2].map((r, i) => [
          ["A1 none waiting", `B  ${PENDING} waiting`, "A2 none waiting"][i] as string,
          round(r.perSecond),
          r.pendingAfter,
          round(r.seconds, 1),
          r.reconciles,
        ]),
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
        "--reconcile-ms",
        String(RECONCILE_MS),
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
          label: "reconcile passes during B's timed run",
          value: b.reconciles,
          note: `one at start, then every ${RECONCILE_MS} ms, over ${b.pendingAfter} pending approvals; B took ${round(b.seconds, 1)} s`,
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
