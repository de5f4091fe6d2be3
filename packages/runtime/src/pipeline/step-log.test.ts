import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { AgentryError, createLogger, type AuditSink } from "@agentry/core";
import { ToolRegistry, defineTool, runAgent, type AgentState } from "@agentry/agent";
import { ScriptedModel, scriptedError, scriptedText, scriptedToolUse, type ScriptedRule } from "@agentry/llm";
import { RedisSessionStore } from "@agentry/memory";
import { useTestRedis } from "@agentry/testkit";
import { AgentryClient } from "../client/agentry-client.js";
import { AgentWorker } from "../worker/agent-worker.js";
import { FencedJobWriter, jobKeys } from "../worker/fenced-job.js";
import { createAgentTaskHandler } from "./agent-task-handler.js";
import { replaySteps, stepEntry, type Checkpoint, type StepEntry } from "./step-log.js";
import { DEFAULT_TASK_STREAM_LIMITS, taskStreamKey } from "../stream/task-stream.js";

const logger = createLogger({ name: "test", level: "silent" });
const redis = useTestRedis("steps");
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

const PAGE = "x".repeat(4096);

/** Calls `fetch_page` until the prompt's number of model calls is reached, then answers. */
const loop: ScriptedRule = (request) => {
  const first = request.messages[0];
  const steps = Number(/loop (\d+)/.exec(typeof first?.content === "string" ? first.content : "")?.[1] ?? 1);
  const calls = request.messages.filter((m) => m.role === "assistant").length;
  if (calls + 1 >= steps) return { content: `Read ${calls} pages.`, stopReason: "end_turn" };
  return { content: [{ type: "tool_use", name: "fetch_page", input: { page: calls + 1 } }] };
};

function pageTools(ran: number[] = []): ToolRegistry {
  return new ToolRegistry().register(
    defineTool({
      name: "fetch_page",
      description: "Fetches a page",
      input: z.object({ page: z.number() }),
      handler: ({ page }) => {
        ran.push(page);
        return `page ${page}: ${PAGE}`;
      },
    }),
  );
}

/** The step log a run of `steps` model calls writes, entry by entry, as the handler builds it. */
async function logOf(steps: number): Promise<{ entries: StepEntry[]; final: AgentState }> {
  const entries: StepEntry[] = [];
  let logged: Checkpoint | undefined;
  const result = await runAgent({
    model: new ScriptedModel({ rules: [loop] }),
    tools: pageTools(),
    messages: [{ role: "user", content: `loop ${steps}` }],
    run: { taskId: "t", tenant: "acme", userId: "u", sessionId: "s" },
    maxSteps: 50,
    hooks: {
      onCheckpoint(state) {
        const next: Checkpoint = { v: 1, historyLength: 0, agent: state };
        const entry = stepEntry(logged, next);
        if (entry) entries.push(JSON.parse(JSON.stringify(entry)) as StepEntry);
        logged = next;
        return Promise.resolve();
      },
    },
  });
  return { entries, final: result.state };
}

describe("the step log", () => {
  it("replays to the run's state, and a step writes its own content only: bytes grow linearly with the steps", async () => {
    const bytes = async (steps: number) => {
      const { entries, final } = await logOf(steps);
      expect(replaySteps(entries)?.agent).toEqual(final);
      // No entry carries more than one tool result: none rewrites the conversation.
      for (const e of entries) expect(Buffer.byteLength(JSON.stringify(e))).toBeLessThan(PAGE.length + 1_024);
      expect(entries.filter((e) => e.t === "base")).toHaveLength(1);
      return entries.reduce((s, e) => s + Buffer.byteLength(JSON.stringify(e)), 0);
    };
    const [b10, b20, b30] = [await bytes(10), await bytes(20), await bytes(30)];
    expect(b30 / b10).toBeGreaterThan(2.5);
    expect(b30 / b10).toBeLessThan(3.3);
    expect(b20 / b10).toBeLessThan(2.2);
  });

  it("skips a write when nothing changed, and starts again from a base when the messages did not only grow", async () => {
    const { entries, final } = await logOf(3);
    const state = replaySteps(entries) as Checkpoint;
    expect(stepEntry(state, { ...state })).toBeUndefined();
    const shorter = { ...state, agent: { ...final, messages: final.messages.slice(0, 1) } };
    expect(stepEntry(state, shorter)?.t).toBe("base");
    expect(() => replaySteps([{ t: "step", step: 1, usage: final.usage }])).toThrow(/without a base/);
    // The handler logs its base before the run sets `inputLength`: the next entry carries it.
    const { inputLength, ...bare } = final;
    const base: Checkpoint = { v: 1, historyLength: 0, agent: bare };
    const next = stepEntry(base, { ...base, agent: final });
    expect(replaySteps([stepEntry(undefined, base), next])?.agent).toEqual(final);
    expect(inputLength).toBe(1);
  });
});

describe("the step log in Redis", () => {
  it("refuses a stale attempt's step write, which changes nothing", async () => {
    const prefix = redis.freshPrefix();
    const conn = redis.client();
    const client = new AgentryClient({ url: redis.url, prefix });
    closers.push(() => client.close());
    const { taskId } = await client.submit({ prompt: "p" }, { tenant: "acme" });
    const keys = jobKeys(prefix, "tasks", taskId);
    const writer = new FencedJobWriter(conn);
    await conn.set(keys.lock, "attempt-1");
    await writer.commit(keys, taskId, "attempt-1", {
      entry: { t: "base", n: 1 },
      reset: true,
      progress: { step: 1, phase: "model" },
      stepsTtlMs: 60_000,
    });
    // Another attempt took the task.
    await conn.set(keys.lock, "attempt-2");
    const before = {
      steps: await conn.lrange(keys.steps, 0, -1),
      job: await conn.hgetall(keys.job),
      stream: await conn.xlen(keys.stream),
    };
    await expect(
      writer.commit(keys, taskId, "attempt-1", {
        entry: { t: "step", n: 2 },
        progress: { step: 2, phase: "model" },
        data: { stale: true },
        stepsTtlMs: 60_000,
      }),
    ).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect({
      steps: await conn.lrange(keys.steps, 0, -1),
      job: await conn.hgetall(keys.job),
      stream: await conn.xlen(keys.stream),
    }).toEqual(before);
    expect(before.steps.map((e) => JSON.parse(e) as unknown)).toEqual([{ t: "base", n: 1 }]);
    // The log expires unless the task ends first.
    expect(await conn.pttl(keys.steps)).toBeGreaterThan(0);
    // The new owner writes.
    await writer.commit(keys, taskId, "attempt-2", { entry: { t: "step", n: 2 } });
    expect(await conn.llen(keys.steps)).toBe(2);
  });

  function worker(prefix: string, model: ScriptedModel, ran: number[], audit?: AuditSink) {
    const conn = redis.client();
    const handler = createAgentTaskHandler({
      model,
      tools: pageTools(ran),
      redis: conn,
      prefix,
      sessions: new RedisSessionStore({ redis: conn, prefix }),
      ...(audit ? { audit } : {}),
    });
    const w = new AgentWorker({ url: redis.url, prefix, logger, handler });
    const client = new AgentryClient({ url: redis.url, prefix });
    closers.push(
      () => client.close(),
      () => w.close(),
    );
    return { worker: w, client, conn };
  }

  it("continues a retried task from its appended steps (no call made twice) and drops the log when it completes", async () => {
    const prefix = redis.freshPrefix();
    const ran: number[] = [];
    const model = new ScriptedModel({
      script: [
        scriptedToolUse("fetch_page", { page: 1 }),
        scriptedError(new AgentryError("PROVIDER_UNAVAILABLE", "502", { retryable: true, retryAfterMs: 10 })),
        scriptedText("Read 1 page."),
      ],
    });
    // A sink that keeps each `once` marker as a real key, as the audit log does.
    const markers = redis.client();
    const onceKey = (once: string) => `${prefix}:audit:once:${once}`;
    const marked = new Set<string>();
    const audit: AuditSink = {
      append: async (_entry, options) => {
        if (!options?.once) return;
        marked.add(options.once.split(":")[0] as string);
        await markers.set(onceKey(options.once), "1", "EX", 3_600);
      },
      onceKey,
    };
    const { worker: w, client, conn } = worker(prefix, model, ran, audit);
    await w.start();
    const { taskId } = await client.submit({ prompt: "read a page" }, { tenant: "acme" });
    const result = await client.wait(taskId, { timeoutMs: 15_000 });
    expect(result).toMatchObject({ text: "Read 1 page.", steps: 2 });
    expect(ran).toEqual([1]);
    // Three calls: the first attempt's two, then the retry's one, which already had the tool's result.
    expect(model.requests).toHaveLength(3);
    expect(JSON.stringify(model.requests[2]?.messages)).toContain("page 1:");
    const keys = jobKeys(prefix, "tasks", taskId);
    await expect.poll(() => conn.exists(keys.steps), { timeout: 5_000 }).toBe(0);
    const job = await client.queue.getJob(taskId);
    expect(job?.data.checkpoint).toBeUndefined();
    expect(job?.returnvalue).toMatchObject({ text: "Read 1 page." });
    // Its request and response markers went with the log: no attempt can write again.
    expect(marked).toEqual(new Set(["request", "response"]));
    expect(await conn.keys(`${prefix}:audit:once:*`)).toEqual([]);
    // So did its session history marker (the history itself stays).
    expect(await conn.keys(`${prefix}:session:*:once:*`)).toEqual([]);
    expect(await conn.keys(`${prefix}:session:*:messages`)).toHaveLength(1);
    // And the journal entry of its tool call, made by the first attempt: no attempt can claim a
    // call of a completed task (claims are fenced by the job lock).
    expect(await conn.keys(`${prefix}:tool-journal:*`)).toEqual([]);
    // The task's stream stays for followers, no longer than the finished retention (5 min).
    const ttl = await conn.pttl(taskStreamKey(prefix, "tasks", taskId));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(DEFAULT_TASK_STREAM_LIMITS.finishedTtlMs);
  });

  it("resumes a task whose checkpoint an older version kept whole in its job data, then drops that checkpoint", async () => {
    const prefix = redis.freshPrefix();
    const ran: number[] = [];
    const model = new ScriptedModel({ script: [scriptedText("Page 1 was read.")] });
    const { worker: w, client, conn } = worker(prefix, model, ran);
    const call = { type: "tool_use" as const, id: "toolu_old", name: "fetch_page", input: { page: 1 } };
    const checkpoint = {
      v: 1,
      historyLength: 0,
      agent: {
        version: 1,
        messages: [
          { role: "user", content: "read a page" },
          { role: "assistant", content: [call] },
        ],
        step: 1,
        usage: { input: 10, output: 5, cacheCreationInput: 0, cacheReadInput: 0 },
        pending: [{ call, result: { type: "tool_result", toolUseId: "toolu_old", content: "page 1: old" } }],
        inputLength: 1,
      },
      costMicroUsd: 7,
    };
    const taskId = "task_0123456789abcdef0123456789abcdef";
    await client.queue.add(
      "agent.run",
      {
        payload: {
          prompt: "read a page",
          tenant: "acme",
          userId: "u",
          sessionId: "s",
          submittedAt: Date.now(),
        },
        parkCount: 1,
        checkpoint,
      },
      { jobId: taskId, attempts: 5 },
    );
    await w.start();
    const result = await client.wait(taskId, { timeoutMs: 15_000 });
    expect(result).toMatchObject({ text: "Page 1 was read.", steps: 2, costMicroUsd: 7 });
    expect(ran).toEqual([]);
    expect(model.requests).toHaveLength(1);
    expect(JSON.stringify(model.requests[0]?.messages)).toContain("page 1: old");
    await expect
      .poll(async () => (await client.queue.getJob(taskId))?.data.checkpoint, { timeout: 5_000 })
      .toBeUndefined();
    expect(await conn.exists(jobKeys(prefix, "tasks", taskId).steps)).toBe(0);
  });
});
