import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it, onTestFinished } from "vitest";
import { AgentryError, createRedis, type AuditEntryInput } from "@agentry/core";
import { startRedisServer, useTestRedis } from "@agentry/testkit";
import { AuditLog } from "./audit-log.js";

// The conditions a task attempt puts on its audit appends: a fence (the attempt still holds the
// job's lock) and a once id (a retried step does not audit the same thing twice).

const run = promisify(execFile);
const redis = useTestRedis("gov-audit-append");
const KEY = "a-test-audit-key-that-is-long-enough-000";

function newLog() {
  const prefix = redis.freshPrefix("audit");
  const client = redis.client();
  return { log: new AuditLog({ redis: client, prefix, key: KEY }), client, prefix };
}

const entry = (i: number, taskId = "task-1"): AuditEntryInput => ({
  type: "action",
  taskId,
  tenant: "acme",
  data: { tool: "get_weather", input: { city: `c${i}` }, outcome: "ok" },
});

describe("AuditLog.append conditions", () => {
  it("a fenced append with a stale token writes nothing and throws LOCK_LOST; the live token writes", async () => {
    const { log, client, prefix } = newLog();
    const lockKey = `${prefix}:tasks:job-1:lock`;
    await client.set(lockKey, "attempt-2");
    await log.append(entry(1));
    const stale = await log
      .append(entry(2), { fence: { key: lockKey, token: "attempt-1" } })
      .catch((e: unknown) => e);
    expect(AgentryError.isInstance(stale) && stale.code).toBe("LOCK_LOST");
    expect(await client.xlen(log.streamKey)).toBe(1);
    expect(await log.readHead()).toMatchObject({ seq: 1 });

    // A lapsed lock (no key at all) fences too.
    const lapsed = await log
      .append(entry(3), { fence: { key: `${prefix}:tasks:job-9:lock`, token: "attempt-1" } })
      .catch((e: unknown) => e);
    expect(AgentryError.isInstance(lapsed) && lapsed.code).toBe("LOCK_LOST");

    expect(await log.append(entry(4), { fence: { key: lockKey, token: "attempt-2" } })).toMatchObject({
      seq: 2,
      duplicate: false,
    });
    expect(await log.verify()).toMatchObject({ ok: true, count: 2, authenticated: true });
  });

  it("batched appends under different fences: the stale attempt's entries fail alone", async () => {
    const { log, client, prefix } = newLog();
    const live = { key: `${prefix}:tasks:a:lock`, token: "live" };
    const stale = { key: `${prefix}:tasks:b:lock`, token: "old" };
    await client.set(live.key, "live");
    await client.set(stale.key, "new-owner");
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        log.append(
          entry(i, i % 3 === 0 ? "b" : "a"),
          i % 3 === 0 ? { fence: stale } : i % 3 === 1 ? { fence: live } : {},
        ),
      ),
    );
    results.forEach((r, i) => {
      if (i % 3 === 0)
        expect(r.status === "rejected" && AgentryError.isInstance(r.reason) && r.reason.code).toBe(
          "LOCK_LOST",
        );
      else expect(r.status).toBe("fulfilled");
    });
    const written = await log.read({ count: 100 });
    expect(written).toHaveLength(8);
    expect(written.every((e) => e.taskId === "a")).toBe(true);
    expect(await log.verify()).toMatchObject({ ok: true, count: 8 });
  });

  it("two writers starting one chain link in one order from the genesis hash, and a writer that saw a head learns of its loss and reports it", async () => {
    // The genesis hash is sent only by a writer that starts the chain; one that had seen a head
    // is told the head moved (to "" for the genesis hash) and links its entry from there.
    const { client, prefix } = newLog();
    const rewinds: { seen: number; found: number }[] = [];
    const onRewound = ({ seen, found }: { seen: { seq: number }; found: { seq: number } }) =>
      rewinds.push({ seen: seen.seq, found: found.seq });
    const log = new AuditLog({ redis: client, prefix, key: KEY, onRewound });
    const other = new AuditLog({ redis: client, prefix, key: KEY, onRewound });
    const firsts = await Promise.all([log.append(entry(1)), other.append(entry(2))]);
    expect(firsts.map((r) => r.seq).sort()).toEqual([1, 2]);
    await log.append(entry(3));
    expect(await log.verify()).toMatchObject({ ok: true, count: 3 });
    // A head that moved forward (the other writer's entries) is no rewind.
    expect(rewinds).toEqual([]);

    // The chain and its head gone (verify --anchors is what catches that): a writer whose head
    // is seq 3 is told the head is empty and starts again from the genesis hash at seq 1.
    await client.del(log.streamKey, `${log.streamKey}:head`);
    expect(await log.append(entry(4))).toMatchObject({ seq: 1, duplicate: false });
    expect(await other.append(entry(5))).toMatchObject({ seq: 2, duplicate: false });
    expect(await log.verify()).toMatchObject({ ok: true, count: 2 });
    // Each writer reports the head it had seen and the one it found: the loss is not quiet.
    expect(rewinds).toEqual([
      { seen: 3, found: 0 },
      // The other writer had seen seq 1 or 2 (whichever it took in the race); it finds the new seq 1.
      { seen: expect.any(Number) as number, found: 1 },
    ]);
  });

  it("a once append twice writes one entry; the second says it was a duplicate of the first", async () => {
    const { log, client, prefix } = newLog();
    const first = await log.append(entry(1), { once: "acme:task-1:step-1:request" });
    const again = await log.append(entry(1), { once: "acme:task-1:step-1:request" });
    expect(first).toMatchObject({ seq: 1, duplicate: false });
    expect(again).toEqual({ ...first, duplicate: true });
    expect(await client.xlen(log.streamKey)).toBe(1);
    const ttl = await client.ttl(`${prefix}:audit:once:acme:task-1:step-1:request`);
    expect(ttl).toBeGreaterThan(7 * 24 * 3600 - 60);
    expect(ttl).toBeLessThanOrEqual(7 * 24 * 3600);

    // In one batch: the same id twice, among other entries, is still written once.
    const batch = await Promise.all([
      log.append(entry(2), { once: "x" }),
      log.append(entry(3)),
      log.append(entry(2), { once: "x" }),
      log.append(entry(4), { once: "acme:task-1:step-1:request" }),
      log.append(entry(5), { once: "y" }),
    ]);
    expect(batch.map((r) => r.duplicate)).toEqual([false, false, true, true, false]);
    expect(batch[2]?.seq).toBe(batch[0]?.seq);
    expect(batch[3]?.seq).toBe(1);
    expect(await log.verify()).toMatchObject({ ok: true, count: 4 });
  });

  it("a fenced once append that is fenced writes nothing and leaves the id free", async () => {
    const { log, client, prefix } = newLog();
    const lock = `${prefix}:tasks:t:lock`;
    await client.set(lock, "new");
    await expect(
      log.append(entry(1), { fence: { key: lock, token: "old" }, once: "t:1" }),
    ).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(await client.exists(`${prefix}:audit:once:t:1`)).toBe(0);
    expect(await log.append(entry(1), { fence: { key: lock, token: "new" }, once: "t:1" })).toMatchObject({
      seq: 1,
      duplicate: false,
    });
  });

  it("an empty or oversized once id is refused with AUDIT_FAILED", async () => {
    const { log } = newLog();
    await expect(log.append(entry(1), { once: "" })).rejects.toMatchObject({ code: "AUDIT_FAILED" });
    await expect(log.append(entry(1), { once: "x".repeat(513) })).rejects.toMatchObject({
      code: "AUDIT_FAILED",
    });
  });

  it("two processes racing with the same once ids write each entry exactly once", async () => {
    const { log, prefix } = newLog();
    const count = 80;
    const startAt = Date.now() + 1_500;
    const children = ["r1", "r2"].map((w) =>
      run(
        process.execPath,
        [
          "--conditions=@agentry/source",
          "--import",
          "tsx",
          new URL("./append-child.fixture.ts", import.meta.url).pathname,
        ],
        {
          env: {
            ...process.env,
            REDIS_URL: redis.url,
            PREFIX: prefix,
            COUNT: String(count),
            WORKER: w,
            KEY,
            ONCE: "race",
            START_AT: String(startAt),
          },
        },
      ),
    );
    const results = (await Promise.all(children)).map(
      (c) => JSON.parse(c.stdout) as { seqs: number[]; duplicates: number },
    );
    expect(results.reduce((n, r) => n + r.seqs.length, 0)).toBe(count);
    expect(results.reduce((n, r) => n + r.duplicates, 0)).toBe(count);
    const entries = await log.read({ count: 1_000 });
    expect(entries.map((e) => (e.data as { input: { city: string } }).input.city).sort()).toEqual(
      Array.from({ length: count }, (_, i) => `city-${i}`).sort(),
    );
    expect(await log.verify()).toMatchObject({ ok: true, count, authenticated: true });
  });
});

describe("AuditLog.hold", () => {
  /** A rider that writes a marker only when the head holds the batch's last hash, as a step write does. */
  const rider = (marker: string) => ({
    define: () => undefined,
    queue: (
      tx: ReturnType<ReturnType<typeof redis.client>["multi"]>,
      head?: { key: string; hash: string },
    ) => {
      tx.eval(
        `if ARGV[1] ~= "" and redis.call("HGET", KEYS[2], "hash") ~= ARGV[1] then return 2 end
         redis.call("SET", KEYS[1], "1") return 1`,
        2,
        marker,
        head?.key ?? marker,
        head?.hash ?? "",
      );
    },
    reply: ([err, value]: [Error | null, unknown]) => {
      if (err) throw err;
      return value;
    },
    load: async () => undefined,
  });

  it("holds an attempt's fenced appends and writes them with the attempt's own write, after a head moved by another writer", async () => {
    const { log, client, prefix } = newLog();
    const other = new AuditLog({ redis: redis.client(), prefix, key: KEY });
    const fence = { key: `${prefix}:tasks:job-1:lock`, token: "attempt-1" };
    await client.set(fence.key, fence.token);
    await log.append(entry(0));
    const hold = log.hold(fence);
    expect(await log.append(entry(1), { fence })).toMatchObject({ held: true });
    await log.append(entry(2), { fence, once: "request:task-1" });
    // Not fenced: written at once.
    await log.append(entry(3, "task-2"));
    expect(hold.size).toBe(2);
    expect(await client.xlen(log.streamKey)).toBe(2);
    // Another process moves the head: the commit retries with the new one.
    await other.append(entry(4, "task-3"));
    expect(await hold.commit(rider(`${prefix}:marker`))).toBe(1);
    expect(await client.get(`${prefix}:marker`)).toBe("1");
    expect(hold.size).toBe(0);
    const tail = await log.tail(10);
    expect(tail.map((e) => (e.data as { input: { city: string } }).input.city)).toEqual([
      "c0",
      "c3",
      "c4",
      "c1",
      "c2",
    ]);
    expect((await log.verify()).ok).toBe(true);
    // A once id already written counts as written; the rest of the commit goes through.
    await log.append(entry(5), { fence, once: "request:task-1" });
    expect(await hold.commit(rider(`${prefix}:marker-2`))).toBe(1);
    expect(await client.get(`${prefix}:marker-2`)).toBe("1");
    expect(await client.xlen(log.streamKey)).toBe(5);
    // Released: appends under the fence are written at once again.
    await hold.release();
    expect(await log.append(entry(6), { fence })).toMatchObject({ seq: 6, duplicate: false });
  });

  it("a commit that meets NOSCRIPT (the server's script cache flushed under an open connection) loads the scripts and writes once", async () => {
    // A private server: flushing the shared one's script cache would disturb other suites.
    const server = await startRedisServer();
    const client = createRedis({ url: server.url, role: "worker" });
    onTestFinished(async () => {
      client.disconnect();
      await server.stop();
    });
    const prefix = "audit-noscript";
    const log = new AuditLog({ redis: client, prefix, key: KEY });
    const fence = { key: `${prefix}:tasks:job-1:lock`, token: "attempt-1" };
    await client.set(fence.key, fence.token);
    const hold = log.hold(fence);
    await log.append(entry(1), { fence });
    expect(await hold.commit(rider(`${prefix}:marker`))).toBe(1);
    // The same connection goes on sending EVALSHA; the server no longer knows the script.
    await client.script("FLUSH");
    await log.append(entry(2), { fence });
    await log.append(entry(3), { fence });
    expect(await hold.commit(rider(`${prefix}:marker-2`))).toBe(1);
    expect(await client.get(`${prefix}:marker-2`)).toBe("1");
    expect(await client.xlen(log.streamKey)).toBe(3);
    expect((await log.verify()).ok).toBe(true);
  });

  it("a commit whose entries are appended but whose own write meets NOSCRIPT writes it once, after them", async () => {
    const server = await startRedisServer();
    const client = createRedis({ url: server.url, role: "worker" });
    onTestFinished(async () => {
      client.disconnect();
      await server.stop();
    });
    const prefix = "audit-noscript-rider";
    const log = new AuditLog({ redis: client, prefix, key: KEY });
    const fence = { key: `${prefix}:tasks:job-1:lock`, token: "attempt-1" };
    await client.set(fence.key, fence.token);
    // A rider with a script of its own, sent as EVALSHA once the connection has sent it, as a
    // step write is.
    const lua = `if ARGV[1] ~= "" and redis.call("HGET", KEYS[2], "hash") ~= ARGV[1] then return 2 end
      return redis.call("INCR", KEYS[1])`;
    type Marking = { testMarkStep(marker: string, head: string, hash: string): unknown };
    const scripted = (marker: string) => ({
      define: () => {
        if (!("testMarkStep" in client)) client.defineCommand("testMarkStep", { lua, numberOfKeys: 2 });
      },
      queue: (tx: ReturnType<typeof client.multi>, head?: { key: string; hash: string }) => {
        (tx as unknown as Marking).testMarkStep(marker, head?.key ?? marker, head?.hash ?? "");
      },
      reply: ([err, value]: [Error | null, unknown]) => {
        if (err) throw err;
        return value;
      },
      load: async () => void (await client.script("LOAD", lua)),
    });
    const hold = log.hold(fence);
    await log.append(entry(1), { fence });
    expect(await hold.commit(scripted(`${prefix}:marker`))).toBe(1);
    await client.script("FLUSH");
    // An append outside the hold puts the audit script back in the cache, not the rider's: the
    // next commit's entries are appended and its own write meets NOSCRIPT in the same EXEC.
    await log.append(entry(2));
    await log.append(entry(3), { fence });
    expect(await hold.commit(scripted(`${prefix}:marker`))).toBe(2);
    expect(await client.xlen(log.streamKey)).toBe(3);
    expect((await log.verify()).ok).toBe(true);
  });

  it("a stale attempt's commit writes neither its entries nor its own write, and throws LOCK_LOST", async () => {
    const { log, client, prefix } = newLog();
    const fence = { key: `${prefix}:tasks:job-1:lock`, token: "attempt-1" };
    await client.set(fence.key, fence.token);
    const hold = log.hold(fence);
    await log.append(entry(1), { fence });
    await client.set(fence.key, "attempt-2");
    const err = await hold.commit(rider(`${prefix}:marker`)).catch((e: unknown) => e);
    expect(AgentryError.isInstance(err) && err.code).toBe("LOCK_LOST");
    expect(await client.xlen(log.streamKey)).toBe(0);
    expect(await client.exists(`${prefix}:marker`)).toBe(0);
  });
});
