import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { AgentryError } from "@agentry/core";
import { freePort, type RecordedRequest } from "@agentry/testkit";
import { demo, eventually, startFaultCluster, toolResultsSent, usePrivateRedis } from "./harness.js";

// Redis refuses every write for a while, mid-run, and answers reads. It fills up: infra/redis/
// redis.conf ships `maxmemory-policy noeviction` (evicting a lock, a ledger hash or an audit head
// would break the promises), so once memory is full every write is refused with OOM; an audit
// log nobody archives gets there. Or a failover demotes it to a replica (READONLY). Or its disk
// fails and a snapshot cannot be written (MISCONF). Once the operator ends it, every task
// completes once, with one side effect and one response each, and the ledger equals what the
// provider billed.

const redis = usePrivateRedis();

/** Retries `fn` while it meets REDIS_UNAVAILABLE, as a caller told so would. */
const retrying = <T>(fn: () => Promise<T>): Promise<T> =>
  eventually(fn, {
    timeoutMs: 120_000,
    retryOn: (err) => AgentryError.isInstance(err) && err.code === "REDIS_UNAVAILABLE",
  });

/** The error results the model was sent for `delete_resource` calls on `resource`. */
function deleteErrorsSent(requests: RecordedRequest[], resource: string): string[] {
  const calls = new Set(
    requests
      .flatMap((r) =>
        (r.body.messages ?? []).flatMap((m) => (typeof m.content === "string" ? [] : m.content)),
      )
      .filter(
        (b) =>
          b.type === "tool_use" &&
          b.name === "delete_resource" &&
          (b.input as { resource?: string } | undefined)?.resource === resource,
      )
      .map((b) => b.id),
  );
  return toolResultsSent(requests)
    .filter((r) => r.isError && calls.has(r.toolUseId))
    .map((r) => r.text);
}

/** A way Redis refuses every write for a while: `refuse` starts it, the function it returns ends it. */
interface Refusal {
  name: string;
  /** What the refusal's replies start with (the workers log it). */
  reply: string;
  /** What the server needs to be started with. */
  serverArgs?: string[];
  refuse(conn: Redis): Promise<() => Promise<void>>;
}

const outOfMemory: Refusal = {
  name: "out of memory (noeviction), until an operator frees memory",
  reply: "OOM",
  async refuse(conn) {
    // A limit just above what is used now, and keys that take the rest, kept full while the
    // workers run (what a completed task drops is taken again at once).
    const used = Number(/used_memory:(\d+)/.exec(await conn.info("memory"))?.[1]);
    await conn.config("SET", "maxmemory", String(used + 4 * 1024 * 1024));
    let junk = 0;
    const fill = async (): Promise<boolean> =>
      conn.set(`junk:${junk++}`, "x".repeat(16 * 1024)).then(
        () => false,
        (err: unknown) => /OOM/.test(String(err)),
      );
    while (!(await fill()));
    let full = true;
    const keepFull = (async () => {
      while (full) {
        while (full && !(await fill()));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    return async () => {
      full = false;
      await keepFull;
      await conn.config("SET", "maxmemory", "0");
      await conn.del(...(await conn.keys("junk:*")));
    };
  },
};

const readOnly: Refusal = {
  name: "turned replica (a failover that demoted it), until it is master again",
  reply: "READONLY",
  async refuse(conn) {
    // A master that never answers: the server keeps its data and refuses writes meanwhile.
    await conn.call("REPLICAOF", "127.0.0.1", String(await freePort()));
    return async () => void (await conn.call("REPLICAOF", "NO", "ONE"));
  },
};

const diskFailed: Refusal = {
  name: "its disk failed (MISCONF: a snapshot it could not write), until a snapshot succeeds again",
  reply: "MISCONF",
  // Moving its directory is a protected setting.
  serverArgs: ["--enable-protected-configs", "yes"],
  async refuse(conn) {
    // With saves configured, Redis refuses every write once a background save failed
    // (stop-writes-on-bgsave-error, on by default). Its working directory removed under it, the
    // save fails, for root too, as on a full or failed disk.
    const [, dir] = (await conn.config("GET", "dir")) as [string, string];
    const gone = mkdtempSync(join(tmpdir(), "agentry-rdb-"));
    await conn.config("SET", "dir", gone);
    await conn.config("SET", "save", "3600 1");
    rmSync(gone, { recursive: true });
    const lastSave = async (status: "ok" | "err") => {
      for (;;) {
        const info = await conn.info("persistence");
        if (info.includes("rdb_bgsave_in_progress:0") && info.includes(`rdb_last_bgsave_status:${status}`))
          return;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await conn.bgsave();
    await lastSave("err");
    // The operator gives it a disk again and saves.
    return async () => {
      await conn.config("SET", "dir", dir);
      await conn.bgsave();
      await lastSave("ok");
      await conn.config("SET", "save", "");
    };
  },
};

describe.each([outOfMemory, readOnly, diskFailed])("Redis refuses writes: $name", (refusal) => {
  it("every task completes once: one side effect, one response, ledger = billed", async () => {
    const server = await redis.start(refusal.serverArgs);
    const conn = server.connect();
    const cluster = redis.use(
      await startFaultCluster({
        redisUrl: server.url,
        prefix: `faults-refused-${refusal.reply.toLowerCase()}`,
        conn,
        // Slow enough that tasks are mid-run when memory runs out.
        reply: (req) => demo(req, { delayMs: 300 }),
      }),
    );
    const c = cluster;
    await Promise.all([c.startWorker("oom-1"), c.startWorker("oom-2")]);
    const tasks: string[] = [];
    for (let i = 0; i < 3; i++) tasks.push(await c.submit(`delete oom-${i} in development`));
    for (let i = 0; i < 6; i++) tasks.push(await c.submit(`What's the weather in Oom${i}?`));
    await expect.poll(() => c.modelRequests().length, { timeout: 30_000 }).toBeGreaterThanOrEqual(3);

    const restore = await refusal.refuse(conn);
    // A submit meanwhile is refused with a typed, retryable error (or, when a completion had just
    // freed some memory, accepted: then it runs like the others).
    const during: unknown = await c.submit("What's the weather in Full?").catch((e: unknown) => e);
    if (typeof during === "string") tasks.push(during);
    else expect(AgentryError.isInstance(during) && during.code, String(during)).toBe("REDIS_UNAVAILABLE");
    // Full for longer than a job lock lives (2 s), once the workers have met the refusal.
    await expect
      .poll(() => c.workers.some((w) => w.output().includes(refusal.reply)), { timeout: 60_000 })
      .toBe(true);
    await new Promise((r) => setTimeout(r, 5_000));

    // The operator ends it.
    await restore();
    tasks.push(await retrying(() => c.submit("What's the weather in After?")));

    for (const id of tasks) {
      const result = await retrying(() => c.client.wait(id, { timeoutMs: 120_000 }));
      expect(result.text.length, id).toBeGreaterThan(0);
      expect((await c.client.status(id)).state, id).toBe("completed");
    }
    const entries = await c.auditEntries();
    for (const id of tasks)
      expect(
        entries.filter((e) => e.taskId === id && e.type === "response"),
        id,
      ).toHaveLength(1);
    expect((await c.audit.verify()).ok).toBe(true);
    // Each delete ran at most once. A delete whose own write was refused (the tool's side effect
    // is that write: it did not happen) failed as a tool call, and the model was told so: never
    // run twice, never lost silently.
    const deleted = (await c.deletions()).map((d) => d.resource);
    expect(new Set(deleted).size, deleted.join()).toBe(deleted.length);
    for (const resource of ["oom-0", "oom-1", "oom-2"]) {
      if (deleted.includes(resource)) continue;
      expect(deleteErrorsSent(c.fake.requests, resource).join("\n"), resource).toMatch(
        new RegExp(`${refusal.reply}|interrupted`),
      );
    }
    // Nothing stays reserved, and the ledger is what the provider billed.
    await expect
      .poll(async () => (await c.ledger.getStats("global")).reserved.tokens, { timeout: 60_000 })
      .toBe(0);
    expect((await c.ledger.getStats("global")).used.tokens).toBe(c.fake.billed().tokens);
  }, 300_000);
});
