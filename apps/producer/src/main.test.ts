import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { freePort, startRedisServer, useTestRedis } from "@agentry/testkit";
import { lintExposition, parseExposition } from "@agentry/runtime/testing";

const redis = useTestRedis("producer-main");
const main = fileURLToPath(new URL("./main.ts", import.meta.url));

/** Starts the producer process with this environment on top of the test's (no inherited keys). */
function startProducer(env: Record<string, string>) {
  const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", main], {
    env: {
      ...process.env,
      AGENTRY_API_KEYS: "",
      AGENTRY_API_KEYS_FILE: "",
      AGENTRY_INSECURE_DEV_KEY: "",
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

describe("producer process on a Redis that evicts keys", () => {
  it("refuses to start (exit 2), with one line naming the node, its policy and what to set", async () => {
    // A submitted task, its place in its session's order or its audit entry could vanish unseen.
    const server = await startRedisServer({ args: ["--maxmemory-policy", "allkeys-lru"] });
    try {
      const p = startProducer({
        REDIS_URL: server.url,
        AGENTRY_API_KEYS: "k-evict=acme",
        PORT: String(await freePort()),
      });
      const guard = setTimeout(() => p.child.kill("SIGKILL"), 60_000);
      const code = await p.exited;
      clearTimeout(guard);
      expect(code, `${p.stderr()}${p.stdout()}`).toBe(2);
      expect(p.stderr()).toMatch(
        /^agentry-producer: Redis at 127\.0\.0\.1:\d+ evicts keys \(maxmemory-policy allkeys-lru\): .*set maxmemory-policy noeviction/m,
      );
      expect(p.stdout()).not.toContain("producer listening");
    } finally {
      await server.stop();
    }
  }, 90_000);
});

describe("producer process without API keys", () => {
  it("refuses to start (exit 2, one line naming the variables) with no keys or an empty AGENTRY_API_KEYS", async () => {
    const runs: Record<string, string>[] = [
      {},
      { AGENTRY_API_KEYS: "  " },
      { AGENTRY_API_KEYS: "dev-key=default+admin" },
    ];
    await Promise.all(
      runs.map(async (env) => {
        const p = startProducer({
          REDIS_URL: redis.url,
          AGENTRY_PREFIX: redis.freshPrefix("nokeys"),
          PORT: String(await freePort()),
          ...env,
        });
        const guard = setTimeout(() => p.child.kill("SIGKILL"), 60_000);
        const code = await p.exited;
        clearTimeout(guard);
        expect(code, `${JSON.stringify(env)}:\n${p.stderr()}${p.stdout()}`).toBe(2);
        expect(p.stderr()).toMatch(/^agentry-producer: .*AGENTRY_INSECURE_DEV_KEY=1/m);
        expect(p.stdout()).not.toContain("producer listening");
      }),
    );
  }, 90_000);

  it("with AGENTRY_INSECURE_DEV_KEY=1 starts, warns loudly, and accepts only dev-key", async () => {
    const port = await freePort();
    const p = startProducer({
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: redis.freshPrefix("devkey"),
      PORT: String(port),
      AGENTRY_INSECURE_DEV_KEY: "1",
    });
    try {
      await expect
        .poll(() => p.stdout().includes('"msg":"producer listening"') || p.child.exitCode !== null, {
          timeout: 60_000,
        })
        .toBe(true);
      expect(p.child.exitCode, p.stderr()).toBeNull();
      const warning = p
        .stdout()
        .split("\n")
        .find((l) => l.includes('"event":"insecure-dev-key"'));
      expect(warning).toMatch(/"level":40.*INSECURE/);
      const post = (key: string) =>
        fetch(`http://127.0.0.1:${port}/v1/tasks`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: '{"prompt":"p"}',
        });
      expect((await post("dev-key")).status).toBe(202);
      expect((await post("other-key")).status).toBe(401);
    } finally {
      p.child.kill("SIGTERM");
    }
    expect(await p.exited).toBe(0);
  }, 90_000);
});

describe("producer process", () => {
  it("starts from the environment, serves the API, logs JSON without secrets, and stops cleanly on SIGTERM", async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", main], {
      env: {
        ...process.env,
        REDIS_URL: redis.url,
        AGENTRY_PREFIX: redis.freshPrefix("main"),
        AGENTRY_API_KEYS: "sk-main-test=acme",
        PORT: String(port),
        HOST: "127.0.0.1",
        LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      await expect
        .poll(() => stdout.includes('"msg":"producer listening"') || child.exitCode !== null, {
          timeout: 30_000,
        })
        .toBe(true);
      expect(child.exitCode, stderr).toBeNull();
      const base = `http://127.0.0.1:${port}`;
      expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ ok: true, redis: true });
      const submitted = await fetch(`${base}/v1/tasks`, {
        method: "POST",
        headers: { authorization: "Bearer sk-main-test", "content-type": "application/json" },
        body: JSON.stringify({ prompt: "from the process test" }),
      });
      expect(submitted.status).toBe(202);
      expect(
        (await fetch(`${base}/v1/tasks`, { method: "POST", headers: { authorization: "Bearer dev-key" } }))
          .status,
      ).toBe(401);
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      const exposition = await metrics.text();
      expect(lintExposition(exposition)).toEqual([]);
      // The submitted task waits (no worker runs here): queue depth counts it, in its state only
      // (prioritized: fair share enqueues it with its tenant's priority).
      const depth =
        parseExposition(exposition).families.find((f) => f.name === "agentry_queue_depth")?.samples ?? [];
      expect(Object.fromEntries(depth.map((s) => [s.labels.state, s.value]))).toEqual({
        waiting: 0,
        active: 0,
        delayed: 0,
        prioritized: 1,
      });
      const login = await fetch(`${base}/admin/queues?key=sk-main-test`, { redirect: "manual" });
      expect(login.status).toBe(303);
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    const lines = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { msg?: string });
    expect(lines.some((l) => l.msg === "task submitted")).toBe(true);
    expect(lines.some((l) => l.msg?.startsWith("AGENTRY_AUDIT_KEY is not set"))).toBe(true);
    expect(lines.at(-1)?.msg).toBe("producer stopped");
    expect(stdout).not.toContain("sk-main-test");
  });
});

describe("producer process on a Redis that does not answer", () => {
  it("says so without the password of REDIS_URL", async () => {
    const port = await freePort();
    const p = startProducer({
      REDIS_URL: `redis://app:s3cret-pass@127.0.0.1:${port}`,
      AGENTRY_API_KEYS: "k-down=acme",
      PORT: String(await freePort()),
    });
    try {
      const deadline = Date.now() + 60_000;
      while (!p.stdout().includes("Redis is not answering yet") && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(p.stdout()).toContain(`redis://app:***@127.0.0.1:${port}`);
      expect(p.stdout() + p.stderr()).not.toContain("s3cret-pass");
    } finally {
      p.child.kill("SIGKILL");
      await p.exited;
    }
  }, 90_000);
});
