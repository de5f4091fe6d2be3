// The task stream end to end in one process: the real SDK streaming from the fake Messages API,
// a real AgentWorker and task handler, real Redis, and AgentryClient.follow as the reader.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger, newId } from "@agentry/core";
import { ToolRegistry } from "@agentry/agent";
import {
  AnthropicModel,
  ScriptedModel,
  costMicroUsd,
  estimateInputTokens,
  maxCostMicroUsd,
  type LanguageModel,
} from "@agentry/llm";
import { fakeReply, startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { BudgetLedger } from "../budget/ledger.js";
import { AgentryClient, type TaskFollowEvent } from "../client/agentry-client.js";
import { createAgentTaskHandler } from "../pipeline/agent-task-handler.js";
import { createBudgetHooks } from "../pipeline/budget-hooks.js";
import { AgentWorker, type AgentWorkerOptions } from "../worker/agent-worker.js";
import { FencedJobWriter, jobKeys } from "../worker/fenced-job.js";
import { TextAppender } from "./text-appender.js";
import { StreamedText } from "./streamed-text.js";
import type { TaskStreamNotice, TextDeltaEntry } from "./task-stream.js";

const logger = createLogger({ name: "task-stream-test", level: "silent" });
const redis = useTestRedis("task-stream");
let fake: FakeAnthropic;
beforeAll(async () => {
  fake = await startFakeAnthropic();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

const anthropic = (idleTimeoutMs = 60_000) =>
  new AnthropicModel({ apiKey: "k", baseURL: fake.url, defaultModel: "claude-sonnet-4-6", idleTimeoutMs });

async function start(model: LanguageModel, options: Partial<AgentWorkerOptions> & { budget?: boolean } = {}) {
  const prefix = redis.freshPrefix();
  const conn = redis.client();
  const ledger = new BudgetLedger({ redis: conn, prefix });
  const budget = createBudgetHooks({
    ledger,
    pricing: { estimateInputTokens, maxCostMicroUsd, costMicroUsd },
    defaultModel: model.defaultModel,
  });
  const handler = createAgentTaskHandler({
    model,
    tools: new ToolRegistry(),
    redis: conn,
    prefix,
    ...(options.budget ? { hooks: [budget] } : {}),
  });
  const worker = new AgentWorker({ url: redis.url, prefix, logger, handler, ...options });
  const client = new AgentryClient({ url: redis.url, prefix });
  closers.push(
    () => client.close(),
    () => worker.close(),
  );
  await worker.start();
  return { client, worker, conn, prefix, ledger };
}

/** Follows a task to its end in the background, collecting every event. */
function collect(client: AgentryClient, taskId: string) {
  const events: TaskFollowEvent[] = [];
  const text = new StreamedText();
  const done = (async () => {
    for await (const e of client.follow(taskId, { timeoutMs: 60_000 })) {
      events.push(e);
      if (e.type === "delta") text.apply(e);
    }
  })();
  return {
    events,
    text,
    done,
    deltas: () => events.filter((e): e is Extract<TaskFollowEvent, { type: "delta" }> => e.type === "delta"),
  };
}

describe("the task stream", () => {
  it("carries the model's text live while the call runs; a stalled call fails on its idle timeout, is retried, and its new text replaces the old", async () => {
    fake.enqueue(
      // message_start, ping, content_block_start, then three words: then nothing.
      { ...fakeReply.text("Partial words that never finish"), stream: { stallAfterEvents: 6 } },
      { ...fakeReply.text("The whole answer, streamed word by word."), stream: { eventDelayMs: 5 } },
    );
    const { client } = await start(anthropic(400));
    const { taskId } = await client.submit({ prompt: "Say something" }, { tenant: "acme" });
    const followed = collect(client, taskId);

    // The first attempt's words arrive while its call hangs: the task is still running.
    await expect.poll(() => followed.text.text(1), { timeout: 15_000 }).toBe("Partial words that ");
    expect((await client.status(taskId)).state).toBe("running");

    await followed.done;
    const end = followed.events.at(-1);
    expect(end).toMatchObject({
      type: "completed",
      result: { text: "The whole answer, streamed word by word." },
    });
    // Rebuilt by offsets, step 1 is the retried call's text exactly; the stalled attempt's words were replaced.
    expect(followed.text.steps()).toEqual([1]);
    expect(followed.text.text(1)).toBe("The whole answer, streamed word by word.");
    const starts = followed.deltas().filter((d) => d.offset === 0);
    expect(starts.map((d) => d.text.split(" ")[0])).toEqual(["Partial", "The"]);
    // Progress and text in the order they happened: each attempt's model phase before its words.
    const kinds = followed.events.map((e) =>
      e.type === "progress" ? `progress:${e.progress.phase}` : e.type,
    );
    expect(kinds[0]).toBe("progress:model");
    expect(kinds.indexOf("progress:model", 1)).toBeGreaterThan(kinds.indexOf("delta"));
    expect(kinds.slice(-2)).toEqual(["progress:done", "completed"]);
    expect((await client.status(taskId)).attempts).toBe(2);
  });

  it("an attempt that lost its job lock writes no more text: its model call finishes, the new attempt's text is the one streamed", async () => {
    const words = (w: string, n: number) => Array.from({ length: n }, () => w).join(" ");
    fake.enqueue(
      { ...fakeReply.text(words("stale", 100)), stream: { eventDelayMs: 25 } },
      fakeReply.text(words("fresh", 10)),
    );
    const { client, conn, worker } = await start(anthropic(), {
      lockDurationMs: 2_000,
      stalledIntervalMs: 1_000,
    });
    const { taskId } = await client.submit({ prompt: "Say stale things" }, { tenant: "acme" });
    const stream = await client.taskStreamKey(taskId);
    const lock = `${worker.prefix}:${worker.queueName}:${taskId}:lock`;
    await expect
      .poll(async () => (await client.readTaskStream(taskId)).some((r) => r.entry.type === "delta"), {
        timeout: 15_000,
      })
      .toBe(true);

    // Another worker takes the task: the lock now holds its token (for a while, then the job stalls back).
    const [, [, last]] = (await conn
      .multi()
      .set(lock, "another-attempt", "PX", 3_000)
      .xrevrange(stream, "+", "-", "COUNT", 1)
      .exec()) as [unknown, [unknown, [string, string[]][]]];
    const swappedAt = last[0]?.[0] as string;

    const result = await client.wait(taskId, { timeoutMs: 60_000 });
    expect(result.text).toBe(words("fresh", 10));
    // The stale call ran to its end (the provider billed all of it)...
    expect(fake.billed().calls).toBe(2);
    const records = await client.readTaskStream(taskId);
    const deltas = records.filter(
      (r): r is { id: string; entry: { type: "delta" } & TextDeltaEntry } => r.entry.type === "delta",
    );
    const stale = deltas.filter((d) => d.entry.text.includes("stale"));
    // ...but none of its text was written after the lock changed hands, and not all of it was written.
    expect(stale.every((d) => compareIds(d.id, swappedAt) <= 0)).toBe(true);
    expect(stale.map((d) => d.entry.text).join("").length).toBeLessThan(words("stale", 100).length);
    const text = new StreamedText();
    for (const d of deltas) text.apply(d.entry);
    expect(text.text(1)).toBe(words("fresh", 10));
  });

  it("is capped and expires: old entries are trimmed, the key has a TTL, and a late reader sees the gap in the offsets", async () => {
    // The worker's limits reach the stream.
    const { client, conn } = await start(new ScriptedModel({ script: [{ content: "A short answer." }] }), {
      taskStream: { ttlMs: 120_000 },
    });
    const { taskId } = await client.submit({ prompt: "Say a little" }, { tenant: "acme" });
    await client.wait(taskId, { timeoutMs: 30_000 });
    const ttl = await conn.pttl(await client.taskStreamKey(taskId));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(120_000);

    // Many writes under a small cap, through the fenced writer itself, one entry each.
    const capped = newId("task");
    const keys = jobKeys(client.prefix, client.queueName, capped);
    await conn.set(keys.lock, "token-1");
    const appender = new TextAppender(conn, { maxLen: 50, ttlMs: 60_000 });
    const words = Array.from({ length: 600 }, (_, i) => `w${i} `);
    let offset = 0;
    for (const word of words) {
      expect(await appender.append(keys, "token-1", [{ step: 1, offset, text: word }])).toBe(true);
      offset += word.length;
    }
    // MAXLEN ~ trims whole nodes (100 entries by default): never more than one node over the cap.
    expect(await conn.xlen(keys.stream)).toBeLessThanOrEqual(50 + 100);
    const expires = await conn.pttl(keys.stream);
    expect(expires).toBeGreaterThan(0);
    expect(expires).toBeLessThanOrEqual(60_000);
    const text = new StreamedText();
    const changes = (await client.readTaskStream(capped, "0-0", 10_000)).flatMap((r) =>
      r.entry.type === "delta" ? [text.apply(r.entry)] : [],
    );
    expect(changes[0]?.kind).toBe("gap");
    expect(changes.slice(1).every((c) => c.kind === "append")).toBe(true);
    expect(words.join("").endsWith(text.text(1))).toBe(true);
  });

  it("announces every write on its channel with the id it follows and the entries it added, exactly as the stream holds them", async () => {
    const { client, conn } = await start(new ScriptedModel({ script: [] }));
    const taskId = newId("task");
    const keys = jobKeys(client.prefix, client.queueName, taskId);
    const notices: (TaskStreamNotice | undefined)[] = [];
    const stop = await client.onTaskStream(taskId, (n) => notices.push(n));
    await conn.set(keys.lock, "token-1");
    await conn.hset(keys.job, "data", "{}");
    const writer = new FencedJobWriter(conn);
    const appender = new TextAppender(conn);
    await appender.append(keys, "token-1", [
      { step: 1, offset: 0, text: 'Héllo, "wörld" 👋\n' },
      { step: 2, offset: 0, text: "next" },
    ]);
    await writer.write(keys, taskId, "token-1", "progress", { step: 2, phase: "model" });
    await appender.append(keys, "token-1", [{ step: 2, offset: 4, text: " step" }]);
    // A stale token writes nothing and announces nothing.
    expect(await appender.append(keys, "stale", [{ step: 2, offset: 9, text: "never" }])).toBe(false);
    await expect.poll(() => notices.length).toBe(3);
    await stop();
    const stored = await client.readTaskStream(taskId);
    expect(notices.flatMap((n) => n?.records ?? [])).toEqual(stored);
    // Each notice follows the one before: a reader at `prev` can take its entries as the next ones.
    expect(notices.map((n) => n?.prev)).toEqual(["0-0", stored[1]?.id, stored[2]?.id]);
    expect(stored.map((r) => r.entry)).toEqual([
      { type: "delta", step: 1, offset: 0, text: 'Héllo, "wörld" 👋\n' },
      { type: "delta", step: 2, offset: 0, text: "next" },
      { type: "progress", progress: { step: 2, phase: "model" } },
      { type: "delta", step: 2, offset: 4, text: " step" },
    ]);
  });

  it("settles a streamed call's usage from its final message: cache writes and reads exactly as billed", async () => {
    const usage = {
      input_tokens: 400,
      output_tokens: 120,
      cache_creation_input_tokens: 2_048,
      cache_read_input_tokens: 8_192,
    };
    fake.enqueue({
      ...fakeReply.text("Answer from a cached prompt.", { usage }),
      stream: { eventDelayMs: 2 },
    });
    const { client, ledger } = await start(anthropic(), { budget: true });
    const { taskId } = await client.submit({ prompt: "Use the cache" }, { tenant: "acme" });
    const result = await client.wait(taskId, { timeoutMs: 30_000 });
    const billed = fake.billed();
    expect(billed).toMatchObject({
      input: 400,
      output: 120,
      cacheCreationInput: 2_048,
      cacheReadInput: 8_192,
    });
    expect(result.usage).toEqual({
      input: 400,
      output: 120,
      cacheCreationInput: 2_048,
      cacheReadInput: 8_192,
    });
    const stats = await ledger.getStats("tenant:acme");
    expect(stats.used.tokens).toBe(billed.tokens);
    expect(stats.used.costMicroUsd).toBe(costMicroUsd("claude-sonnet-4-6", result.usage));
    expect(stats.reserved.tokens).toBe(0);
  });
});

function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split("-").map(BigInt);
  const [bm = 0n, bs = 0n] = b.split("-").map(BigInt);
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}
