import { afterEach, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { keySpace, shardOfSession } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AgentryClient, type SessionOrder } from "./agentry-client.js";
import { taskIdFor } from "../tasks/task-ids.js";

const redis = useTestRedis("submit-claims");
const SHARDS = 3;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

function client(prefix: string, extra: Partial<ConstructorParameters<typeof AgentryClient>[0]> = {}) {
  const c = new AgentryClient({ url: redis.url, prefix, shards: SHARDS, ...extra });
  closers.push(() => c.close());
  return c;
}

function direct(): Redis {
  const r = new Redis(redis.url);
  closers.push(async () => void r.disconnect());
  return r;
}

/** Sessions of `tenant` covering every shard, `perShard` on each. */
function sessionsOnEveryShard(tenant: string, perShard: number): string[] {
  const byShard: string[][] = Array.from({ length: SHARDS }, () => []);
  for (let i = 0; byShard.some((s) => s.length < perShard); i++) {
    const session = `s-${i}`;
    const list = byShard[shardOfSession(tenant, session, SHARDS)] as string[];
    if (list.length < perShard) list.push(session);
  }
  return byShard.flat();
}

/** How many shards hold a job under `taskId`. */
async function jobsAcrossShards(c: AgentryClient, r: Redis, taskId: string): Promise<number> {
  const found = await Promise.all(c.shards.map((s) => r.exists(keySpace(s.prefix).key(c.queueName, taskId))));
  return found.reduce((a, b) => a + b, 0);
}

/**
 * Submits one key from every session at once, spread over `clients` (producer replicas, each with
 * its own connection), and checks the outcome: one task id, exactly one caller told it created
 * the task, every caller told that task's session, one job in all. Returns the winner's session.
 */
async function raceOneKey(clients: AgentryClient[], sessions: string[], key: string, r: Redis) {
  const results = await Promise.all(
    sessions.map((sessionId, i) =>
      (clients[i % clients.length] as AgentryClient).submit(
        { prompt: `hello ${i}`, sessionId, idempotencyKey: key },
        { tenant: "acme" },
      ),
    ),
  );
  const taskId = taskIdFor("acme", key);
  expect(new Set(results.map((x) => x.taskId))).toEqual(new Set([taskId]));
  expect(results.filter((x) => !x.deduplicated)).toHaveLength(1);
  const winner = results.find((x) => !x.deduplicated)?.sessionId as string;
  expect(new Set(results.map((x) => x.sessionId))).toEqual(new Set([winner]));
  expect(await jobsAcrossShards(clients[0] as AgentryClient, r, taskId)).toBe(1);
  return { taskId, winner };
}

describe("idempotent submits on one queue", () => {
  it("of concurrent submits of one key exactly one is told it created the task", async () => {
    const prefix = redis.freshPrefix();
    const clients = [1, 2, 3].map(() => client(prefix, { shards: 1 }));
    const r = direct();
    const sessions = Array.from({ length: 9 }, (_, i) => `s-${i}`);
    for (let round = 0; round < 8; round++) {
      const { taskId, winner } = await raceOneKey(clients, sessions, `order-${round}`, r);
      const job = await (clients[0] as AgentryClient).queue.getJob(taskId);
      expect(job?.data.payload.sessionId).toBe(winner);
    }
  });
});

describe("idempotent submits across queue shards", () => {
  it("concurrent submits of one key naming sessions on every shard enqueue exactly one job", async () => {
    const prefix = redis.freshPrefix();
    // Three producer replicas, each with its own connection, racing on every key.
    const clients = [client(prefix), client(prefix), client(prefix)];
    const r = direct();
    const sessions = sessionsOnEveryShard("acme", 4);
    for (let round = 0; round < 8; round++) {
      const { taskId, winner } = await raceOneKey(clients, sessions, `order-${round}`, r);
      const shard = await (clients[0] as AgentryClient).locate(taskId);
      expect(shard?.index).toBe(shardOfSession("acme", winner, SHARDS));
      // The claim points at that shard, for as long as a completed job is kept.
      const claimKey = keySpace(prefix).key("idempotency", taskId);
      expect(JSON.parse((await r.get(claimKey)) as string)).toMatchObject({
        state: "enqueued",
        shard: shard?.index,
        tenant: "acme",
      });
      expect(await r.pttl(claimKey)).toBeGreaterThan(6 * 24 * 3600 * 1000);
    }
  });

  it("a claim whose enqueue failed is released; the next submit of the key enqueues", async () => {
    const prefix = redis.freshPrefix();
    const failing: SessionOrder = {
      enqueue: () => Promise.reject(new Error("session order unavailable")),
      remove: () => Promise.resolve(),
      head: () => Promise.resolve(null),
    };
    const broken = client(prefix, { sessionOrder: () => failing });
    const r = direct();
    const taskId = taskIdFor("acme", "k1");
    await expect(
      broken.submit({ prompt: "hi", sessionId: "a", idempotencyKey: "k1" }, { tenant: "acme" }),
    ).rejects.toThrow(/session order unavailable/);
    expect(await r.exists(keySpace(prefix).key("idempotency", taskId))).toBe(0);
    expect(await jobsAcrossShards(broken, r, taskId)).toBe(0);
    const c = client(prefix);
    const [first, again] = [
      await c.submit({ prompt: "hi", sessionId: "b", idempotencyKey: "k1" }, { tenant: "acme" }),
      await c.submit({ prompt: "hi", sessionId: "c", idempotencyKey: "k1" }, { tenant: "acme" }),
    ];
    expect(first).toMatchObject({ taskId, sessionId: "b", deduplicated: false });
    expect(again).toMatchObject({ taskId, sessionId: "b", deduplicated: true });
    expect(await jobsAcrossShards(c, r, taskId)).toBe(1);
  });

  it("an enqueued claim whose job is gone is taken over, as one shard adds the job anew", async () => {
    const prefix = redis.freshPrefix();
    const c = client(prefix);
    const r = direct();
    const [a, b] = sessionsOnEveryShard("acme", 1) as [string, string];
    const first = await c.submit({ prompt: "hi", sessionId: a, idempotencyKey: "k2" }, { tenant: "acme" });
    // The completed jobs' count limit removes a job before its claim lapses.
    await (await c.locate(first.taskId))?.queue.remove(first.taskId);
    const fresh = new AgentryClient({ url: redis.url, prefix, shards: SHARDS });
    closers.push(() => fresh.close());
    const second = await fresh.submit(
      { prompt: "hi", sessionId: b, idempotencyKey: "k2" },
      { tenant: "acme" },
    );
    expect(second).toMatchObject({ taskId: first.taskId, sessionId: b, deduplicated: false });
    expect(await jobsAcrossShards(c, r, first.taskId)).toBe(1);
    expect((await fresh.locate(first.taskId))?.index).toBe(shardOfSession("acme", b, SHARDS));
  });

  it("a claim of another tenant under the task id is a CONFLICT", async () => {
    const prefix = redis.freshPrefix();
    const c = client(prefix);
    const r = direct();
    const taskId = taskIdFor("acme", "k3");
    await r.set(
      keySpace(prefix).key("idempotency", taskId),
      JSON.stringify({ state: "pending", shard: 0, tenant: "other", owner: "x" }),
      "PX",
      60_000,
    );
    await expect(
      c.submit({ prompt: "hi", sessionId: "a", idempotencyKey: "k3" }, { tenant: "acme" }),
    ).rejects.toMatchObject({ code: "CONFLICT" });
    expect(await jobsAcrossShards(c, r, taskId)).toBe(0);
  });
});
