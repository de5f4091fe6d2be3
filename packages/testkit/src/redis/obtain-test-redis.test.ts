import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { getContainerRuntimeClient } from "testcontainers";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  obtainTestRedis,
  startRedisCluster,
  startRedisContainer,
  startRedisServer,
  TEST_REDIS_IMAGE,
  type TestRedisServer,
} from "../index.js";
import { testRedisUrl } from "./test-redis.js";

const dockerAnswers = await getContainerRuntimeClient().then(
  () => true,
  () => false,
);

async function ping(url: string): Promise<string> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await client.ping();
  } finally {
    client.disconnect();
  }
}

describe("where a test run's Redis comes from", () => {
  const started: TestRedisServer[] = [];
  afterEach(async () => {
    vi.unstubAllEnvs();
    await Promise.all(started.splice(0).map((s) => s.stop()));
  });
  const keep = (server: TestRedisServer) => (started.push(server), server);
  const noContainer = () =>
    Promise.reject(new Error("the container must not be tried when REDIS_URL is set"));

  it("REDIS_URL first, when it answers", async () => {
    const url = testRedisUrl();
    const server = await obtainTestRedis({ env: { REDIS_URL: url }, startContainer: noContainer });
    expect(server).toMatchObject({ kind: "external", url });
  });

  it("a REDIS_URL that does not answer is an error, not a silent fallback", async () => {
    const dead = await startRedisServer();
    await dead.stop();
    await expect(
      obtainTestRedis({ env: { REDIS_URL: dead.url }, startContainer: noContainer }),
    ).rejects.toThrow(`REDIS_URL=${dead.url} does not answer PING`);
  });

  it("a container when a Docker engine answers, before any redis-server", async () => {
    const ownServer = keep(await startRedisServer());
    const asContainer: TestRedisServer = { ...ownServer, kind: "container" };
    const hasRedisServer = vi.fn(() => true);
    const server = await obtainTestRedis({
      env: {},
      startContainer: () => Promise.resolve(asContainer),
      hasRedisServer,
    });
    expect(server).toBe(asContainer);
    expect(hasRedisServer).not.toHaveBeenCalled();
  });

  it("a private redis-server child when no Docker engine answers", async () => {
    const server = keep(await obtainTestRedis({ env: {}, startContainer: () => Promise.resolve(undefined) }));
    expect(server.kind).toBe("child");
    expect(await ping(server.url)).toBe("PONG");
  });

  it("a Docker engine whose container does not start falls back to redis-server, saying why", async () => {
    const warnings: string[] = [];
    const server = keep(
      await obtainTestRedis({
        env: {},
        startContainer: () => Promise.reject(new Error("pull access denied for redis")),
        warn: (m) => warnings.push(m),
      }),
    );
    expect(server.kind).toBe("child");
    expect(await ping(server.url)).toBe("PONG");
    expect(warnings).toEqual([expect.stringContaining("pull access denied for redis")]);
  });

  it("with none of the three, the error names every way to get one", async () => {
    const attempt = obtainTestRedis({
      env: {},
      startContainer: () => Promise.resolve(undefined),
      hasRedisServer: () => false,
    });
    await expect(attempt).rejects.toThrow(/REDIS_URL.*Docker engine.*redis-server.*no Docker engine answers/);
  });

  it("startRedisServer without the binary says what to install", async () => {
    vi.stubEnv("PATH", "/nonexistent");
    await expect(startRedisServer()).rejects.toThrow(
      /redis-server is not on PATH: install it \(Debian: apt-get install redis-server/,
    );
  });

  it("startRedisCluster without redis-cli says what to install, before starting any node", async () => {
    const onlyServer = mkdtempSync(join(tmpdir(), "agentry-path-"));
    try {
      symlinkSync(
        execFileSync("sh", ["-c", "command -v redis-server"]).toString().trim(),
        join(onlyServer, "redis-server"),
      );
      vi.stubEnv("PATH", onlyServer);
      await expect(startRedisCluster({ nodes: 3 })).rejects.toThrow(
        /redis-cli is not on PATH: .*apt-get install redis-tools/,
      );
    } finally {
      rmSync(onlyServer, { recursive: true, force: true });
    }
  });

  it("testcontainers loads on this Node (the container path is there when Docker is)", async () => {
    const { RedisContainer } = await import("@testcontainers/redis");
    expect(typeof RedisContainer).toBe("function");
    expect(typeof getContainerRuntimeClient).toBe("function");
    if (!dockerAnswers) await expect(startRedisContainer()).resolves.toBeUndefined();
  });

  it.runIf(dockerAnswers)(
    `starts ${TEST_REDIS_IMAGE} in a container when a Docker engine answers`,
    { timeout: 180_000 },
    async () => {
      const server = await startRedisContainer();
      expect(server?.kind).toBe("container");
      keep(server!);
      const client = new Redis(server!.url, { maxRetriesPerRequest: 1 });
      try {
        expect(await client.ping()).toBe("PONG");
        expect(await client.info("server")).toMatch(/^redis_version:7\.4\./m);
      } finally {
        client.disconnect();
      }
    },
  );
});
