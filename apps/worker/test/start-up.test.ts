import { createServer, type AddressInfo, type Server } from "node:net";
import { describe, expect, it } from "vitest";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient } from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { exitCodeOf, startWorkerProcess, waitStarted } from "./worker-processes.js";

// A worker that lost its Anthropic key must not quietly answer real tasks with the scripted
// model's canned text: it refuses to start unless the scripted model is chosen explicitly.

const redis = useTestRedis("worker-start-up");

describe("worker start-up without a model", () => {
  it("refuses to start without ANTHROPIC_API_KEY unless AGENTRY_LLM is set, naming both ways out, exit code 2", async () => {
    const base = {
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: redis.freshPrefix(),
      ANTHROPIC_API_KEY: "",
      AGENTRY_LLM: "",
    };
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
        const line = w
          .output()
          .split("\n")
          .find((l) => l.startsWith("agentry-worker: "));
        expect(line, `${run.name}:\n${w.output()}`).toMatch(/no model configured/);
        expect(line).toContain("ANTHROPIC_API_KEY");
        expect(line).toContain("AGENTRY_LLM=scripted");
        expect(w.output()).not.toContain('"event":"worker-started"');
      }),
    );
  }, 90_000);

  it("starts with AGENTRY_LLM=scripted, warns that answers are canned, and stops cleanly", async () => {
    const w = startWorkerProcess("scripted", {
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: redis.freshPrefix(),
      ANTHROPIC_API_KEY: "",
      AGENTRY_LLM: "scripted",
    });
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

describe("worker start-up with its metrics port taken", () => {
  it("stops with one line naming AGENTRY_WORKER_PORT and the port, exit code 2, without taking a job", async () => {
    // What a second worker on the same host meets: the port is held by another process.
    const holder: Server = createServer();
    await new Promise<void>((resolve, reject) => {
      holder.once("error", reject);
      holder.listen(0, "0.0.0.0", () => resolve());
    });
    const port = (holder.address() as AddressInfo).port;
    const prefix = redis.freshPrefix();
    const conn = redis.client();
    const client = new AgentryClient({
      url: redis.url,
      prefix,
      sessionOrder: new RedisSessionTurns({ redis: conn, prefix }),
    });
    try {
      // A task is waiting: a worker that is going to stop must not claim it first.
      const { taskId } = await client.submit(
        { prompt: "weather in Oslo?", userId: "u1", sessionId: "s1" },
        { tenant: "acme" },
      );
      const w = startWorkerProcess("port-taken", {
        REDIS_URL: redis.url,
        AGENTRY_PREFIX: prefix,
        AGENTRY_LLM: "scripted",
        AGENTRY_WORKER_PORT: String(port),
      });
      let stderr = "";
      w.child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
      const code = await exitCodeOf(w);
      expect(code, w.output()).toBe(2);
      const lines = stderr.split("\n").filter((l) => l.trim() !== "");
      expect(lines, stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^agentry-worker: AGENTRY_WORKER_PORT: port \d+ is already in use/);
      expect(lines[0]).toContain(String(port));
      expect(w.output()).not.toMatch(/EADDRINUSE|\n\s+at /);
      expect(w.output()).not.toContain('"event":"worker-started"');
      const status = await client.status(taskId);
      expect(status.state).toBe("queued");
      expect(status.attempts).toBe(0);
    } finally {
      await client.close();
      conn.disconnect();
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  }, 90_000);
});
