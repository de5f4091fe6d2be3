import { describe, expect, it, onTestFinished } from "vitest";
import { AgentryClient } from "@agentry/runtime";
import { startRedisServer } from "@agentry/testkit";
import { startWorkerProcess, waitStarted } from "../worker-processes.js";
import { eventually } from "./harness.js";

// Redis restarts and keeps nothing: it ran without persistence (as a development Redis does),
// or lost its recent writes in a crash. The audit chain a worker was writing is gone from Redis
// with it, and nothing failed: the worker's next append starts the chain again. That must not
// be quiet until the next anchor run, so the worker logs it as an error.

describe("Redis restarts with its data lost", () => {
  it("the worker says its audit chain went back, and goes on with new work", async () => {
    let server = await startRedisServer();
    const { port } = server;
    onTestFinished(async () => void (await server.stop()));
    const w = startWorkerProcess("after-loss", {
      REDIS_URL: server.url,
      AGENTRY_PREFIX: "agentry",
      AGENTRY_LLM: "scripted",
    });
    onTestFinished(async () => void (await w.stop()));
    await waitStarted(w);
    const client = new AgentryClient({ url: server.url, prefix: "agentry" });
    onTestFinished(() => client.close());
    const before = await client.submit({ prompt: "What is the weather in Paris?" }, { tenant: "acme" });
    await client.wait(before.taskId, { timeoutMs: 60_000 });

    // Killed and started again on the same port with an empty data directory.
    await server.kill();
    server = await startRedisServer({ port });

    const after = await eventually(() =>
      client.submit({ prompt: "What is the weather in Lima?" }, { tenant: "acme" }),
    );
    await eventually(() => client.wait(after.taskId, { timeoutMs: 60_000 }));
    expect((await client.status(after.taskId)).state).toBe("completed");
    await expect
      .poll(() => w.output().includes('"event":"audit-chain-rewound"'), { timeout: 60_000 })
      .toBe(true);
    const line = w
      .output()
      .split("\n")
      .find((l) => l.includes('"event":"audit-chain-rewound"'));
    expect(JSON.parse(line ?? "{}")).toMatchObject({ level: 50, foundSeq: 0 });
    expect((JSON.parse(line ?? "{}") as { seenSeq: number }).seenSeq).toBeGreaterThan(0);
  }, 180_000);
});
