import { afterEach, describe, expect, it } from "vitest";
import { AgentryError, createLogger, tenantOwnedId } from "@agentry/core";
import { RedisSessionTurns } from "@agentry/memory";
import {
  AgentWorker,
  type AgentTaskResult,
  type TaskHandler,
  type TaskProgress,
  type TaskStatus,
} from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { EXIT } from "../io.js";
import { runAgentry } from "../testing/run-agentry.js";

const redis = useTestRedis("admin-submit");
const logger = createLogger({ name: "admin-test", level: "silent" });

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await (closers.pop() as () => Promise<void>)();
});

function setup() {
  const prefix = redis.freshPrefix();
  return { env: { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix }, prefix };
}

async function startWorker(prefix: string, handler: TaskHandler) {
  const worker = new AgentWorker({
    url: redis.url,
    prefix,
    handler,
    logger,
    concurrency: 2,
    shutdownGraceMs: 1_000,
  });
  closers.push(() => worker.close());
  await worker.start();
  return worker;
}

const result = (text: string): AgentTaskResult => ({
  text,
  steps: 2,
  usage: { input: 10, output: 5, cacheCreationInput: 0, cacheReadInput: 0 },
  costMicroUsd: 42,
  model: "scripted",
  finishedAt: Date.now(),
});

describe("agentry submit and status", () => {
  it("submits a task, prints its id, and status shows it queued", async () => {
    const { env } = setup();
    const run = await runAgentry(
      [
        "submit",
        "What is the weather in Oslo?",
        "--tenant",
        "acme",
        "--user",
        "u1",
        "--session",
        "s1",
        "--json",
      ],
      env,
    );
    expect(run.code).toBe(0);
    const submitted = JSON.parse(run.stdout) as { taskId: string; sessionId: string; deduplicated: boolean };
    expect(submitted).toMatchObject({ sessionId: "s1", deduplicated: false });

    const status = await runAgentry(["status", submitted.taskId, "--json"], env);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      taskId: submitted.taskId,
      state: "queued",
      tenant: "acme",
      userId: "u1",
      sessionId: "s1",
      prompt: "What is the weather in Oslo?",
    } satisfies Partial<TaskStatus>);
    const human = await runAgentry(["status", submitted.taskId], env);
    expect(human.stdout).toMatch(/^task\s+task_\w+\nstate\s+queued\n/);
    expect(human.stdout).toMatch(/prompt\s+What is the weather in Oslo\?\n/);

    // Session order is registered like the HTTP API does it.
    // The session is the tenant's own: its order is kept under the tenant-qualified session id.
    const turns = new RedisSessionTurns({ redis: redis.client(), prefix: env.AGENTRY_PREFIX });
    expect(await turns.head(tenantOwnedId("acme", "session", "s1"))).toBe(submitted.taskId);
    expect(await turns.head("s1")).toBeNull();
  });

  it("prints only the id without --json, and maps an idempotency key to one task", async () => {
    const { env } = setup();
    const first = await runAgentry(["submit", "hello", "--idempotency-key", "k-1"], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^task_\w+\n$/);
    const again = await runAgentry(["submit", "hello", "--idempotency-key", "k-1", "--json"], env);
    expect(JSON.parse(again.stdout)).toMatchObject({ taskId: first.stdout.trim(), deduplicated: true });
  });

  it("reads the prompt from stdin with -, and refuses invalid input with exit 2", async () => {
    const { env } = setup();
    const run = await runAgentry(["submit", "-", "--json"], env, { stdin: "from stdin\n" });
    expect(run.code).toBe(0);
    const { taskId } = JSON.parse(run.stdout) as { taskId: string };
    expect(JSON.parse((await runAgentry(["status", taskId, "--json"], env)).stdout)).toMatchObject({
      prompt: "from stdin",
    });

    const bad = await runAgentry(["submit", "hi", "--session", "not a valid id!"], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^agentry: Invalid task: sessionId: [^\n]*\n$/);
    const missing = await runAgentry(["submit"], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^agentry: missing prompt/);
  });

  it("--wait shows live progress on stderr and prints the answer on stdout", async () => {
    const { env, prefix } = setup();
    const seen: string[] = [];
    let stderrSoFar = "";
    const steps: { progress: TaskProgress; line: string }[] = [
      { progress: { step: 1, phase: "model" }, line: "step 1: calling model" },
      { progress: { step: 1, phase: "tool", tool: "get_weather" }, line: "step 1: running tool get_weather" },
      { progress: { step: 2, phase: "model" }, line: "step 2: calling model" },
    ];
    await startWorker(prefix, async (ex) => {
      // Report each step until the CLI has shown it (the CLI subscribes after submitting).
      for (const s of steps) {
        for (let i = 0; i < 400 && !stderrSoFar.includes(s.line); i++) {
          await ex.reportProgress(s.progress);
          await new Promise((r) => setTimeout(r, 25));
        }
        seen.push(s.line);
      }
      return { type: "completed", result: result(`It is sunny in Oslo. (${ex.payload.prompt.length})`) };
    });
    const run = await runAgentry(["submit", "weather in Oslo?", "--wait", "--timeout", "30"], env, {
      onStderr: (chunk) => (stderrSoFar += chunk),
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("It is sunny in Oslo. (16)\n");
    expect(run.stderr).toMatch(/^submitted task task_\w+ \(session session_\w+\)\n/);
    const lines = run.stderr.split("\n");
    const indexes = steps.map((s) => lines.indexOf(s.line));
    expect(indexes.every((i) => i > 0)).toBe(true);
    expect([...indexes].sort((a, b) => a - b)).toEqual(indexes);
    expect(run.stderr).toMatch(/completed in 2 steps\n$/);

    const json = await runAgentry(["submit", "again", "--wait", "--json"], env, {
      onStderr: (c) => (stderrSoFar += c),
    });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      outcome: "completed",
      text: "It is sunny in Oslo. (5)",
      steps: 2,
      costMicroUsd: 42,
      taskId: expect.stringMatching(/^task_/),
    });
  });

  it("--wait names the approval a task waits for", async () => {
    const { env, prefix } = setup();
    let stderrSoFar = "";
    const line =
      "step 3: awaiting approval apr_123 — run `agentry approvals approve apr_123 --as <approver>`";
    await startWorker(prefix, async (ex) => {
      for (let i = 0; i < 400 && !stderrSoFar.includes(line); i++) {
        await ex.reportProgress({ step: 3, phase: "awaiting_approval", approvalIds: ["apr_123"] });
        await new Promise((r) => setTimeout(r, 25));
      }
      return { type: "completed", result: result("deleted db-7 in staging") };
    });
    const run = await runAgentry(["submit", "delete db-7", "--wait"], env, {
      onStderr: (c) => (stderrSoFar += c),
    });
    expect(run.code).toBe(0);
    expect(run.stderr.split("\n")).toContain(line);
    expect(run.stdout).toBe("deleted db-7 in staging\n");
  });

  it("--wait exits 1 with the typed code when the task fails", async () => {
    const { env, prefix } = setup();
    await startWorker(prefix, async () => {
      throw new AgentryError("BUDGET_EXCEEDED", "tenant:acme is over its cost budget");
    });
    const run = await runAgentry(["submit", "expensive", "--wait"], env);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(
      /\nagentry: task failed: \[BUDGET_EXCEEDED\] tenant:acme is over its cost budget\n$/,
    );

    const json = await runAgentry(["submit", "expensive", "--wait", "--json"], env);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      outcome: "failed",
      state: "failed",
      error: { code: "BUDGET_EXCEEDED" },
    });

    const { taskId } = JSON.parse(json.stdout) as { taskId: string };
    const status = await runAgentry(["status", taskId], env);
    expect(status.stdout).toMatch(/state\s+failed\n/);
    expect(status.stdout).toMatch(/error\s+\[BUDGET_EXCEEDED\] tenant:acme is over its cost budget\n/);
  });

  it("--wait exits 124 (not a failed task's 1) with TIMEOUT when no worker finishes the task in time; --json says timed_out", async () => {
    const { env } = setup();
    const run = await runAgentry(["submit", "nobody is listening", "--wait", "--timeout", "0.5"], env);
    expect(run.code).toBe(EXIT.WAIT_TIMEOUT);
    expect(EXIT.WAIT_TIMEOUT).toBe(124);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(
      /\nagentry: task timed out: \[TIMEOUT\] task task_\w+ did not finish within 0\.5 s \(it is queued\)\n$/,
    );

    const json = await runAgentry(
      ["submit", "nobody is listening", "--wait", "--timeout", "0.5", "--json", "--idempotency-key", "k1"],
      env,
    );
    expect(json.code).toBe(124);
    const body = JSON.parse(json.stdout) as { taskId: string };
    expect(body).toMatchObject({ outcome: "timed_out", state: "queued", error: { code: "TIMEOUT" } });
    // The task keeps running: waiting again with the same idempotency key follows the same task.
    const again = await runAgentry(
      ["submit", "nobody is listening", "--wait", "--timeout", "0.5", "--json", "--idempotency-key", "k1"],
      env,
    );
    expect(again.code).toBe(124);
    expect(JSON.parse(again.stdout)).toMatchObject({ taskId: body.taskId, outcome: "timed_out" });
  });

  it("status and cancel of an unknown task fail with one line", async () => {
    const { env } = setup();
    const run = await runAgentry(["status", "task_nope"], env);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe("agentry: unknown task task_nope\n");
    const cancel = await runAgentry(["cancel", "task_nope"], env);
    expect(cancel.stderr).toBe("agentry: unknown task task_nope\n");
  });

  it("cancels a queued task", async () => {
    const { env } = setup();
    const { taskId } = JSON.parse((await runAgentry(["submit", "never mind", "--json"], env)).stdout) as {
      taskId: string;
    };
    const run = await runAgentry(["cancel", taskId], env);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`cancelled ${taskId} (was queued)\n`);
    expect((await runAgentry(["status", taskId], env)).code).toBe(1);
  });
});
