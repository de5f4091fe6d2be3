import { describe, expect, it } from "vitest";
import { useTestRedis } from "@agentry/testkit";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";

// A worker that lost its Anthropic key must not quietly answer real tasks with the scripted
// model's canned text: it refuses to start unless the scripted model is chosen explicitly.

const redis = useTestRedis("worker-start-up");

/** Waits for the process to exit on its own (it is killed after 60 s as a guard). */
async function exitCodeOf(w: WorkerProcess): Promise<number | null> {
  const guard = setTimeout(() => void w.kill(), 60_000);
  try {
    return await new Promise<number | null>((resolve) => {
      if (w.child.exitCode !== null) resolve(w.child.exitCode);
      else w.child.once("exit", (code) => resolve(code));
    });
  } finally {
    clearTimeout(guard);
  }
}

describe("worker start-up without a model", () => {
  it("refuses to start without ANTHROPIC_API_KEY unless AGENTRY_LLM is set, naming both ways out, exit code 2", async () => {
    const base = { REDIS_URL: redis.url, AGENTRY_PREFIX: redis.freshPrefix(), ANTHROPIC_API_KEY: "", AGENTRY_LLM: "" };
    const runs = [
      { name: "no key", env: base },
      // A gateway URL alone used to fall back to the scripted model as well.
      { name: "base URL only", env: { ...base, ANTHROPIC_BASE_URL: "http://127.0.0.1:9/v1" } },
      { name: "blank AGENTRY_LLM", env: { ...base, AGENTRY_LLM: "   " } },
    ];
    await Promise.all(
      runs.map(async (run) => {
        const w = startWorkerProcess(`no-model-${run.name}`, run.env);
        const code = await exitCodeOf(w);
        expect(code, `${run.name}:\n${w.output()}`).toBe(2);
        const line = w.output().split("\n").find((l) => l.startsWith("agentry-worker: "));
        expect(line, `${run.name}:\n${w.output()}`).toMatch(/no model configured/);
        expect(line).toContain("ANTHROPIC_API_KEY");
        expect(line).toContain("AGENTRY_LLM=scripted");
        expect(w.output()).not.toContain('"event":"worker-started"');
      }),
    );
  }, 90_000);

  it("starts with AGENTRY_LLM=scripted, warns that answers are canned, and stops cleanly", async () => {
    const w = startWorkerProcess("scripted", { REDIS_URL: redis.url, AGENTRY_PREFIX: redis.freshPrefix(), ANTHROPIC_API_KEY: "", AGENTRY_LLM: "scripted" });
    try {
      await waitStarted(w, 60_000);
      const lines = w
        .output()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { event?: string; llm?: string; level?: number });
      expect(lines.find((l) => l.event === "worker-started")?.llm).toBe("scripted");
      // pino level 40 = warn
      expect(lines.find((l) => l.event === "scripted-model")?.level).toBe(40);
    } finally {
      expect(await w.stop()).toBe(0);
    }
  }, 90_000);
});
