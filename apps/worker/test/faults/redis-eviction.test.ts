import { describe, expect, it, onTestFinished } from "vitest";
import { createRedis } from "@agentry/core";
import { AgentryClient } from "@agentry/runtime";
import { freePort, startRedisServer } from "@agentry/testkit";
import { exitCodeOf, startWorkerProcess, waitStarted } from "../worker-processes.js";

// A Redis that evicts keys under memory pressure (any maxmemory-policy but noeviction: a cache's
// allkeys-lru, a managed service's volatile-lru) drops keys without an error anyone sees: a
// waiting job, a job lock, a budget reservation, an audit chain's head or a once-marker. Every
// promise those keys keep would break silently, so a worker refuses such a Redis at start, stops
// taking jobs when one appears while it runs, and logs keys evicted under it. Each test has its
// own redis-server, whose settings it changes.

async function privateRedis(args: string[] = []) {
  const server = await startRedisServer({ args });
  const conn = createRedis({ url: server.url });
  onTestFinished(async () => {
    conn.disconnect();
    await server.stop();
  });
  return { server, conn };
}

describe("a Redis that evicts keys", () => {
  it("the worker refuses to start on it (exit 2), with one line naming the node, its policy and what to set", async () => {
    const { server } = await privateRedis(["--maxmemory-policy", "allkeys-lru"]);
    const w = startWorkerProcess("on-lru", {
      REDIS_URL: server.url,
      AGENTRY_PREFIX: "agentry",
      AGENTRY_LLM: "scripted",
    });
    onTestFinished(() => w.kill());
    expect(await exitCodeOf(w), w.output()).toBe(2);
    const line = w
      .output()
      .split("\n")
      .find((l) => l.startsWith("agentry-worker: "));
    expect(line, w.output()).toMatch(
      /^agentry-worker: Redis at 127\.0\.0\.1:\d+ evicts keys \(maxmemory-policy allkeys-lru\): .*set maxmemory-policy noeviction/,
    );
    expect(w.output()).not.toContain('"event":"worker-started"');
  }, 120_000);

  it("turned on while the worker runs: it takes no jobs, /healthz and /metrics say why, evicted keys are logged, and it takes jobs again once noeviction is back", async () => {
    const { server, conn } = await privateRedis();
    const port = await freePort();
    const w = startWorkerProcess("evicting-later", {
      REDIS_URL: server.url,
      AGENTRY_PREFIX: "agentry",
      AGENTRY_LLM: "scripted",
      AGENTRY_WORKER_PORT: String(port),
      AGENTRY_EVICTION_CHECK_MS: "200",
    });
    onTestFinished(async () => void (await w.stop()));
    await waitStarted(w);
    const client = new AgentryClient({ url: server.url, prefix: "agentry" });
    onTestFinished(() => client.close());
    const first = await client.submit({ prompt: "What is the weather in Paris?" }, { tenant: "acme" });
    expect((await client.wait(first.taskId, { timeoutMs: 60_000 })).steps).toBeGreaterThan(0);

    // An operator points the deployment's Redis at a cache's setting.
    await conn.config("SET", "maxmemory-policy", "volatile-lru");
    await expect.poll(() => w.output().includes('"event":"eviction-paused"'), { timeout: 60_000 }).toBe(true);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(503);
    expect(JSON.stringify(await health.json())).toMatch(
      /taking no jobs: Redis at 127\.0\.0\.1:\d+ evicts keys \(maxmemory-policy volatile-lru\)/,
    );
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^agentry_redis_eviction_paused(\{[^}]*\})? 1$/m);

    // A task submitted now waits: no worker runs it while keys may vanish (a job BullMQ's
    // blocking wait takes anyway is handed back untouched).
    const second = await client.submit({ prompt: "What is the weather in Lima?" }, { tenant: "acme" });
    await expect
      .poll(async () => (await client.status(second.taskId)).state, { timeout: 60_000 })
      .toBe("queued");

    // Memory runs out and Redis evicts keys that expire (the first task's stream is one of them).
    const used = Number(/used_memory:(\d+)/.exec(await conn.info("memory"))?.[1]);
    await conn.config("SET", "maxmemory", String(used + 256 * 1024));
    const filler = "x".repeat(4096);
    for (let i = 0; i < 400; i++) await conn.set(`filler:${i}`, filler, "EX", 3600);
    expect(Number(/evicted_keys:(\d+)/.exec(await conn.info("stats"))?.[1])).toBeGreaterThan(0);
    await expect
      .poll(() => w.output().includes('"event":"redis-evicted-keys"'), { timeout: 60_000 })
      .toBe(true);
    expect((await client.status(second.taskId)).state).toBe("queued");

    // Back to a safe setting: the worker takes jobs again and the waiting task runs.
    await conn.config("SET", "maxmemory", "0");
    await conn.config("SET", "maxmemory-policy", "noeviction");
    await expect
      .poll(() => w.output().includes('"event":"eviction-resumed"'), { timeout: 60_000 })
      .toBe(true);
    await client.wait(second.taskId, { timeoutMs: 60_000 });
    expect((await client.status(second.taskId)).state).toBe("completed");
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  }, 180_000);
});
