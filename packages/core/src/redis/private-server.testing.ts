import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { onTestFinished } from "vitest";

/**
 * A client of a redis-server of the test's own, on a unix socket (core cannot depend on the
 * testkit), for tests that flush its script cache or fill its memory: the Redis other suites
 * share is never touched. Stopped when the test finishes. `args` go to redis-server.
 */
export async function privateServerClient(args: string[] = []): Promise<Redis> {
  const dir = mkdtempSync(join(tmpdir(), "agentry-core-redis-"));
  const socket = join(dir, "redis.sock");
  const server = spawn(
    "redis-server",
    ["--port", "0", "--unixsocket", socket, "--save", "", "--dir", dir, ...args],
    {
      stdio: "ignore",
    },
  );
  const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  const stop = async () => {
    server.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (const deadline = Date.now() + 10_000; !existsSync(socket);) {
    if (server.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error("redis-server did not start (is it installed?)");
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const redis = new Redis({ path: socket, maxRetriesPerRequest: null });
  onTestFinished(async () => {
    redis.disconnect();
    await stop();
  });
  return redis;
}
