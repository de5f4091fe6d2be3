// `agentry submit --follow` and `agentry watch`: the model's text printed as it arrives, from a
// real AgentWorker's task stream on the test Redis.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { AgentryError, createLogger } from "@agentry/core";
import { AgentryClient, AgentWorker, type AgentTaskResult, type TaskHandler } from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { EXIT } from "../io.js";
import { runAgentry } from "../testing/run-agentry.js";

const redis = useTestRedis("admin-watch");
const logger = createLogger({ name: "admin-watch-test", level: "silent" });
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (closers.length > 0) await (closers.pop() as () => Promise<void>)();
});

async function setup(handler: TaskHandler) {
  const prefix = redis.freshPrefix();
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
  const client = new AgentryClient({ url: redis.url, prefix });
  closers.push(() => client.close());
  return { env: { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix }, client };
}

const result = (text: string): AgentTaskResult => ({
  text,
  steps: 1,
  usage: { input: 10, output: 5, cacheCreationInput: 0, cacheReadInput: 0 },
  costMicroUsd: 42,
  model: "scripted",
  finishedAt: Date.now(),
});

/** Publishes `pieces` of step 1 one at a time, each once `shown()` includes everything before it. */
async function publishLive(
  ex: Parameters<TaskHandler>[0],
  pieces: string[],
  shown: () => string,
): Promise<void> {
  let offset = 0;
  for (const [i, text] of pieces.entries()) {
    ex.publishText({ step: 1, offset, text });
    offset += text.length;
    const upTo = pieces.slice(0, i + 1).join("");
    await expect.poll(shown, { timeout: 30_000 }).toContain(upTo);
  }
}

describe("agentry submit --follow and agentry watch", () => {
  it("submit --follow (the CLI as a process) prints the model's text as it is generated, then the end", async () => {
    const pieces = ["It ", "is ", "sunny ", "in ", "Oslo."];
    let stdout = "";
    const { env } = await setup(async (ex) => {
      await ex.reportProgress({ step: 1, phase: "model" });
      // Each piece is generated only after the CLI printed the one before: the text is live.
      await publishLive(ex, pieces, () => stdout);
      await ex.reportProgress({ step: 1, phase: "done" });
      return { type: "completed", result: result(pieces.join("")) };
    });
    const child = spawn(
      process.execPath,
      [
        "--conditions=@agentry/source",
        "--import",
        "tsx",
        "apps/admin/src/cli.ts",
        "submit",
        "weather in Oslo?",
        "--follow",
        "--timeout",
        "60",
      ],
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    closers.push(() => void child.kill());
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect({ code, stderr }).toMatchObject({ code: EXIT.OK });
    expect(stdout).toBe("It is sunny in Oslo.\n");
    expect(stderr).toMatch(
      /^submitted task task_\w+ \(session session_\w+\)\nstep 1: calling model\ncompleted in 1 step\n$/,
    );
  });

  it("watch replays the text so far, prints a retried step's text once, and says when the retry departs from it", async () => {
    let stdout = "";
    // A progress line on stderr ends the open stdout line, so the text is compared without line breaks.
    const shown = () => stdout.replaceAll("\n", "");
    const { env, client } = await setup(async (ex) => {
      if (ex.attemptsStarted === 1) {
        await ex.reportProgress({ step: 1, phase: "model" });
        await publishLive(ex, ["The ", "answer ", "is "], shown);
        throw new AgentryError("PROVIDER_UNAVAILABLE", "stream cut off", { retryable: true });
      }
      if (ex.attemptsStarted === 2) {
        await ex.reportProgress({ step: 1, phase: "model" });
        // The same words again, then more: nothing is printed twice.
        await publishLive(ex, ["The ", "answer ", "is ", "forty"], shown);
        throw new AgentryError("PROVIDER_UNAVAILABLE", "stream cut off again", { retryable: true });
      }
      await ex.reportProgress({ step: 1, phase: "model" });
      // A third generation that says something else: a note, then its text.
      await publishLive(ex, ["The ", "answer ", "was ", "42."], shown);
      await ex.reportProgress({ step: 1, phase: "done" });
      return { type: "completed", result: result("The answer was 42.") };
    });
    const { taskId } = await client.submit({ prompt: "the answer?" }, { tenant: "acme" });
    let stderr = "";

    const run = await runAgentry(["watch", taskId, "--timeout", "60"], env, {
      onStderr: (s) => (stderr += s),
      onStdout: (s) => (stdout += s),
    });
    expect(run.code).toBe(EXIT.OK);
    // Each piece once: the retry's repeated words are not printed again; its departure starts a new line.
    expect(run.stdout).toBe("The answer is \nforty\nThe answer was 42.\n");
    expect(stderr).toContain(
      "step 1: the model call was made again and answered differently; its text from the start:\n",
    );
    expect(stderr).toMatch(/completed in 1 step\n$/);
  });

  it("watch --json prints one JSON object per event; an unknown task exits 1; a task that does not finish in time exits 124", async () => {
    const { env, client } = await setup(async (ex) => {
      if (ex.payload.prompt === "hang")
        return new Promise((_, reject) =>
          ex.signal.addEventListener("abort", () => reject(ex.signal.reason as Error)),
        );
      ex.publishText({ step: 1, offset: 0, text: "Hi there." });
      await ex.reportProgress({ step: 1, phase: "done" });
      return { type: "completed", result: result("Hi there.") };
    });
    const { taskId } = await client.submit({ prompt: "hello" }, { tenant: "acme" });
    const json = await runAgentry(["watch", taskId, "--json"], env);
    expect(json.code).toBe(EXIT.OK);
    const events = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; text?: string; result?: { text: string } });
    expect(events.map((e) => e.type)).toEqual(["delta", "progress", "completed"]);
    expect(events[0]).toMatchObject({ type: "delta", taskId, step: 1, offset: 0, text: "Hi there." });
    expect(events[2]?.result?.text).toBe("Hi there.");

    const unknown = await runAgentry(["watch", "task_00000000000000000000000000000000"], env);
    expect(unknown.code).toBe(EXIT.FAILURE);
    expect(unknown.stderr).toBe("agentry: unknown task task_00000000000000000000000000000000\n");

    const hanging = await client.submit({ prompt: "hang" }, { tenant: "acme" });
    const late = await runAgentry(["watch", hanging.taskId, "--timeout", "1", "--json"], env);
    expect(late.code).toBe(EXIT.WAIT_TIMEOUT);
    expect(JSON.parse(late.stdout.trim().split("\n").at(-1) ?? "{}")).toMatchObject({
      type: "timed_out",
      taskId: hanging.taskId,
      error: { code: "TIMEOUT" },
    });
    expect(late.stderr).toMatch(/^agentry: task timed out: \[TIMEOUT\]/m);
  });
});
