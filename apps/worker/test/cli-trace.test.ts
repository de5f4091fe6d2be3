import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import {
  ancestorsOf,
  OTLP_SPAN_KIND,
  startFakeAnthropic,
  startOtlpReceiver,
  useTestRedis,
  type FakeAnthropic,
  type OtlpReceiver,
  type ReceivedSpan,
} from "@agentry/testkit";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";
import { referenceReply } from "@agentry/reference/testing";

// One trace from the `agentry` CLI through a worker: the CLI process and a worker process, both
// exporting over OTLP/HTTP to one receiver, as they would to Jaeger.

/** The CLI's entry point, run from source like `pnpm agentry`. */
const CLI = fileURLToPath(new URL("../../admin/src/cli.ts", import.meta.url));
const versionOf = (pkg: string) =>
  (
    JSON.parse(readFileSync(new URL(`../../${pkg}/package.json`, import.meta.url), "utf8")) as {
      version: string;
    }
  ).version;

const redis = useTestRedis("cli-trace");
let receiver: OtlpReceiver | undefined;
let fake: FakeAnthropic | undefined;
let worker: WorkerProcess | undefined;
afterEach(async () => {
  await worker?.kill();
  await fake?.close();
  await receiver?.close();
});

/** Runs `agentry <args>` as its own process; resolves with its exit code and output. */
function runCliProcess(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stdout, stderr })));
}

describe("agentry submit with an OTLP endpoint", () => {
  it("exports its own spans before it exits, and the worker's spans of the task continue that trace", async () => {
    receiver = await startOtlpReceiver();
    fake = await startFakeAnthropic({ handler: referenceReply });
    const env = {
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: redis.freshPrefix("trace"),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    };
    worker = startWorkerProcess("traced", {
      ...env,
      AGENTRY_LLM: "anthropic",
      ANTHROPIC_API_KEY: "test-key",
      ANTHROPIC_BASE_URL: fake.url,
    });
    await waitStarted(worker);

    const cli = await runCliProcess(
      ["submit", "What's the weather in Paris?", "--tenant", "acme", "--wait", "--json"],
      env,
    );
    expect(cli.code, cli.stderr).toBe(0);
    const result = JSON.parse(cli.stdout) as {
      taskId: string;
      outcome: string;
      usage: { input: number; output: number; cacheCreationInput: number; cacheReadInput: number };
    };
    expect(result.outcome).toBe("completed");

    // Step 1: the CLI flushed before exiting: its spans are all here already.
    const fromCli = receiver.spans().filter((s) => s.resource["service.name"] === "agentry-cli");
    const root = fromCli.find((s) => s.name === "agentry submit");
    expect(root, JSON.stringify(fromCli.map((s) => s.name))).toBeDefined();
    expect(root!.parentSpanId).toBe("");
    expect(root!.resource["service.version"]).toBe(versionOf("admin"));
    expect(root!.attributes).toMatchObject({ "agentry.task_id": result.taskId, "agentry.tenant": "acme" });
    const producer = fromCli.find((s) => s.kind === OTLP_SPAN_KIND.producer);
    expect(producer?.name).toMatch(/^add tasks/);
    expect(producer!.traceId).toBe(root!.traceId);
    expect(producer!.parentSpanId).toBe(root!.spanId);

    // Step 2: the worker exports at its graceful stop (its batch processor flushes).
    expect(await worker.stop()).toBe(0);
    const fromWorker = receiver.spans().filter((s) => s.resource["service.name"] === "agentry-worker");
    expect(fromWorker.length).toBeGreaterThan(0);
    for (const s of fromWorker) expect(s.resource["service.version"]).toBe(versionOf("worker"));
    const ofTask = (s: ReceivedSpan) => s.traceId === root!.traceId;
    const consumer = fromWorker.find((s) => s.kind === OTLP_SPAN_KIND.consumer && ofTask(s));
    const agent = fromWorker.find(
      (s) => s.name === "invoke_agent agentry" && s.attributes["agentry.task_id"] === result.taskId,
    );
    const chats = fromWorker.filter(
      (s) => s.name.startsWith("chat ") && s.attributes["agentry.task_id"] === result.taskId,
    );
    const tool = fromWorker.find((s) => s.name === "execute_tool get_weather");
    expect(consumer, "worker consumer span in the CLI's trace").toBeDefined();
    expect(agent).toBeDefined();
    expect(chats).toHaveLength(2);
    expect(tool).toBeDefined();

    // Step 3: one trace: every worker span of the task has the CLI's producer and root spans as ancestors.
    const all = receiver.spans();
    for (const span of [consumer!, agent!, ...chats, tool!]) {
      expect(span.traceId, span.name).toBe(root!.traceId);
      const ancestors = ancestorsOf(span, all).map((a) => a.spanId);
      expect(ancestors, span.name).toContain(producer!.spanId);
      expect(ancestors.at(-1), span.name).toBe(root!.spanId);
    }

    // Step 4: invoke_agent names provider and model and carries the task's usage totals, equal to
    // its chat spans summed and to what the CLI printed.
    const sum = (attr: string) => chats.reduce((total, s) => total + Number(s.attributes[attr]), 0);
    const u = result.usage;
    expect(agent!.attributes).toMatchObject({
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.provider.name": "anthropic",
      "gen_ai.request.model": chats[0]!.attributes["gen_ai.request.model"],
      "gen_ai.usage.input_tokens": u.input + u.cacheCreationInput + u.cacheReadInput,
      "gen_ai.usage.output_tokens": u.output,
    });
    expect(agent!.attributes["gen_ai.usage.input_tokens"]).toBe(sum("gen_ai.usage.input_tokens"));
    expect(agent!.attributes["gen_ai.usage.output_tokens"]).toBe(sum("gen_ai.usage.output_tokens"));
    expect(u.output).toBeGreaterThan(0);
    // Two processes start from source (tsx) on a machine that may be busy: a generous guard.
  }, 120_000);
});
