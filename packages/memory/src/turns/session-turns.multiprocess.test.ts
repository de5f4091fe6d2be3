import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { useTestRedis } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { RedisSessionTurns } from "./redis-session-turns.js";

const redis = useTestRedis("turns-mp");
const RACER = fileURLToPath(new URL("./fixtures/turn-racer.ts", import.meta.url));
const PACKAGE_DIR = fileURLToPath(new URL("../..", import.meta.url));

function runChild(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", RACER], {
      cwd: PACKAGE_DIR,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, output }));
  });
}

describe("session turns across processes", () => {
  it("three processes racing for one session's turns never overlap and follow submit order", async () => {
    const client = redis.client();
    const prefix = redis.freshPrefix("mp");
    const session = "tenant:acme:session:s1";
    // Random ids: the order that matters is the submit order, not the names.
    const tasks = Array.from({ length: 12 }, () => `task_${randomBytes(3).toString("hex")}`);
    const turns = new RedisSessionTurns({ redis: client, prefix });
    for (const task of tasks) await turns.enqueue(session, task);

    const children = ["a", "b", "c"];
    const results = await Promise.all(
      children.map((name) =>
        runChild({
          REDIS_URL: redis.url,
          TURN_PREFIX: prefix,
          TURN_SESSION: session,
          TURN_TASKS: JSON.stringify(tasks),
          TURN_CHILDREN: String(children.length),
          TURN_CHILD: name,
        }),
      ),
    );
    for (const r of results) expect(r.code, r.output).toBe(0);

    const events = await client.lrange(`${prefix}:events`, 0, -1);
    expect(events.filter((e) => e.startsWith("violation"))).toEqual([]);
    // Strictly start/end pairs of one task by one process, in submit order: no interleaving.
    const runs = [];
    for (let i = 0; i < events.length; i += 2) {
      const [kind, task, child] = (events[i] as string).split(":");
      expect(events[i + 1], `turn of ${task} interleaved`).toBe(`end:${task}:${child}`);
      expect(kind).toBe("start");
      runs.push(task);
    }
    expect(runs).toEqual(tasks);
    expect(await turns.head(session)).toBeNull();
  }, 60_000);
});
