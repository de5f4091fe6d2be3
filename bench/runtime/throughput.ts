/**
 * Throughput of full agent tasks against bare BullMQ no-op jobs, same run, same Redis, same
 * concurrency, same job count, reported as a ratio (full tasks/s ÷ bare jobs/s).
 *
 *   node --conditions=@agentry/source --import tsx bench/runtime/throughput.ts [--tasks 2000] [--concurrency 16,50]
 *
 * Full task: the reference worker (`buildWorker`) in this process with ScriptedModel at zero
 * latency; the prompt asks for the weather, so each task is two model calls and one tool call,
 * with the budget hooks and ledger, governance (default policy, audit log), session store and
 * turns, tracing (startTelemetry in-process, no exporter, bullmq-otel spans) and metrics hooks
 * on, and the logger at `info` writing nowhere. Each task has its own session.
 * Through the SDK: the same full task, but the worker's model is the Anthropic adapter (the
 * real @anthropic-ai/sdk, streaming) against the testkit's fake Messages API, served from this
 * process at zero latency and answering by the reference worker's own rules: the HTTP, SSE
 * parsing and SDK cost a real provider adds, without its latency.
 * Bare: a BullMQ Queue + Worker with a processor that returns at once, same job options
 * (catalog retention), a payload of the same shape.
 * Both: all jobs are enqueued first, then the clock runs from starting the worker to the last
 * `completed` event. Uses REDIS_URL when set, else starts a private redis-server.
 */
import { referenceReply } from "../../packages/reference/src/testing.js";
import { startFakeAnthropic, type FakeAnthropic } from "../../packages/testkit/src/index.js";
import { obtainTestRedis } from "../../packages/testkit/src/redis/redis-server.js";
import { createRedis } from "../../packages/core/src/index.js";
import { jobOptionsFor, startTelemetry } from "../../packages/runtime/src/index.js";
import {
  benchClient,
  dropPrefix,
  flags,
  freshPrefix,
  startFullWorker,
  submitTasks,
  weatherPrompt,
} from "../lib/agentry.js";
import { bullmq } from "../lib/bullmq.js";
import { commandLine, emitResult, type Figure } from "../lib/result.js";
import { round, table } from "../lib/stats.js";

const args = flags({ tasks: "2000", concurrency: "16,50" });
const TASKS = Number(args.tasks);
const CONCURRENCIES = args.concurrency.split(",").map(Number);

async function bare(url: string, concurrency: number, count = TASKS): Promise<number> {
  const prefix = freshPrefix("bare");
  const queueConn = createRedis({ url, role: "producer" });
  const queue = new bullmq.Queue("tasks", { connection: queueConn, prefix });
  const opts = jobOptionsFor("agent.run");
  for (let i = 0; i < count; i += 500) {
    await queue.addBulk(
      Array.from({ length: Math.min(500, count - i) }, (_, j) => ({
        name: "agent.run",
        data: {
          payload: {
            prompt: weatherPrompt(i + j),
            tenant: "acme",
            userId: `u-${(i + j) % 50}`,
            sessionId: `s-${i + j}`,
            submittedAt: Date.now(),
          },
          parkCount: 0,
        },
        opts: {
          attempts: opts.attempts,
          removeOnComplete: opts.removeOnComplete,
          removeOnFail: opts.removeOnFail,
        },
      })),
    );
  }
  let done = 0;
  let finish: () => void = () => undefined;
  const all = new Promise<void>((r) => (finish = r));
  const workerConn = createRedis({ url, role: "worker" });
  const worker = new bullmq.Worker("tasks", async () => ({ ok: true }), {
    connection: workerConn,
    prefix,
    concurrency,
    autorun: false,
  });
  worker.on("completed", () => {
    if (++done === count) finish();
  });
  worker.on("failed", (_job, err) => console.error(`bare job failed: ${err.message}`));
  const t0 = performance.now();
  void worker.run();
  await all;
  const seconds = (performance.now() - t0) / 1000;
  await worker.close();
  await workerConn.quit();
  await queue.close();
  await dropPrefix(queueConn, prefix);
  await queueConn.quit();
  return count / seconds;
}

/** Full tasks on the scripted model, or through the SDK against `fake` when given. */
async function full(
  url: string,
  concurrency: number,
  count = TASKS,
  fake?: FakeAnthropic,
): Promise<{ perSecond: number; failed: number; sample: unknown }> {
  const prefix = freshPrefix(fake ? "sdk" : "full");
  const { client, redis } = await benchClient(url, prefix);
  const { built, completions } = await startFullWorker({
    url,
    prefix,
    concurrency,
    start: false,
    ...(fake ? { anthropicBaseUrl: fake.url } : {}),
  });
  const ids = await submitTasks(client, count, weatherPrompt);
  const t0 = performance.now();
  await built.start();
  await completions.waitFor(count);
  const seconds = (performance.now() - t0) / 1000;
  // What one task did: steps and cost of the last one (it must have used the tool).
  const status = await client.status(ids[ids.length - 1] as string);
  await built.close();
  await client.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
  // The fake records every request; this run's are of no further use.
  fake?.reset();
  return {
    perSecond: count / seconds,
    failed: completions.failed,
    sample: { state: status.state, steps: status.result?.steps, costMicroUsd: status.result?.costMicroUsd },
  };
}

async function main(): Promise<void> {
  const server = await obtainTestRedis();
  const telemetry = startTelemetry({ serviceName: "agentry-bench" });
  // The fake Messages API answers as the reference worker's rules do (weather: a tool call, then text).
  const fake = await startFakeAnthropic({ handler: referenceReply });
  const rows: (string | number)[][] = [];
  const figures: Figure[] = [];
  try {
    // Warm-up (JIT, connections, Lua script loads), not measured.
    await bare(server.url, CONCURRENCIES[0] ?? 16, Math.min(1000, TASKS));
    await full(server.url, CONCURRENCIES[0] ?? 16, Math.min(1000, TASKS));
    await full(server.url, CONCURRENCIES[0] ?? 16, Math.min(1000, TASKS), fake);
    for (const c of CONCURRENCIES) {
      const bareRate = await bare(server.url, c);
      const f = await full(server.url, c);
      const sdk = await full(server.url, c, TASKS, fake);
      for (const [name, r] of [
        ["full", f],
        ["SDK", sdk],
      ] as const)
        if (r.failed > 0) console.error(`warning: ${r.failed} failed attempts among ${name} tasks`);
      console.error(
        `  concurrency ${c}: bare ${round(bareRate)} jobs/s, full ${round(f.perSecond)} tasks/s, through the SDK ${round(sdk.perSecond)} tasks/s; ` +
          `last tasks ${JSON.stringify(f.sample)} ${JSON.stringify(sdk.sample)}`,
      );
      const ratio = f.perSecond / bareRate;
      const sdkRatio = sdk.perSecond / bareRate;
      rows.push([
        `concurrency ${c}`,
        round(bareRate),
        round(f.perSecond),
        round(ratio, 3),
        round(sdk.perSecond),
        round(sdkRatio, 3),
        f.failed + sdk.failed,
      ]);
      figures.push(
        {
          label: `bare BullMQ no-op jobs/s, concurrency ${c}`,
          value: round(bareRate),
          unit: "jobs/s",
          note: `${TASKS} jobs`,
        },
        {
          label: `full agent tasks/s, concurrency ${c}`,
          value: round(f.perSecond),
          unit: "tasks/s",
          note: `${TASKS} tasks, 2 model calls + 1 tool call each`,
        },
        { label: `ratio full ÷ bare, concurrency ${c}`, value: round(ratio, 3), note: `same run` },
        {
          label: `full tasks/s through the SDK + fake API, concurrency ${c}`,
          value: round(sdk.perSecond),
          unit: "tasks/s",
          note: `${TASKS} tasks; the Anthropic adapter (real SDK, streaming) against the testkit's fake Messages API in the benchmark process, zero latency`,
        },
        {
          label: `ratio SDK + fake API ÷ bare, concurrency ${c}`,
          value: round(sdkRatio, 3),
          note: "same run",
        },
      );
    }
  } finally {
    await fake.close();
    await telemetry.shutdown();
    await server.stop();
  }
  console.log(`\nThroughput, ${TASKS} jobs per run, one in-process worker, Redis ${server.kind}`);
  console.log(
    table(
      ["", "bare jobs/s", "full tasks/s", "full ÷ bare", "SDK + fake API tasks/s", "SDK ÷ bare", "failed"],
      rows,
    ),
  );
  emitResult({
    name: "throughput",
    command: commandLine("bench/runtime/throughput.ts", [
      "--tasks",
      String(TASKS),
      "--concurrency",
      CONCURRENCIES.join(","),
    ]),
    figures,
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
