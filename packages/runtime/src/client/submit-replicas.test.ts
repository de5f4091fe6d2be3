import { beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { tenantOwnedId } from "@agentry/core";
import { RedisSessionTurns } from "@agentry/memory";
import { useRedisReplicated } from "@agentry/testkit";
import { AgentryClient } from "./agentry-client.js";

// A submit the master acknowledged but had not yet sent to its replica is lost when the replica
// takes over; with waitReplicas, submit returns only once a replica holds the task.
const servers = useRedisReplicated();
let onReplica: Redis;

beforeAll(() => {
  onReplica = servers.connect(servers.replica);
});

const clientOn = (prefix: string, timeoutMs: number) => {
  const turns = new Redis(servers.master.port, "127.0.0.1");
  const client = new AgentryClient({
    url: servers.master.url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis: turns, prefix }),
    waitReplicas: { replicas: 1, timeoutMs },
  });
  return {
    client,
    turns: new RedisSessionTurns({ redis: turns, prefix }),
    close: async () => {
      await client.close();
      turns.disconnect();
    },
  };
};

describe("AgentryClient with waitReplicas", () => {
  it("returns a submit once the replica holds the task", async () => {
    const { client, close } = clientOn("{sr1}", 10_000);
    try {
      for (let i = 0; i < 3; i++) {
        const { taskId, deduplicated } = await client.submit({ prompt: `hi ${i}` }, { tenant: "acme" });
        expect(deduplicated).toBe(false);
        // No waiting here: the submit returned once the replica acknowledged.
        expect(await onReplica.exists(`{sr1}:tasks:${taskId}`)).toBe(1);
      }
    } finally {
      await close();
    }
  });

  it("a submit the replica does not acknowledge in time fails, retryable, naming the task, which stays enqueued; the same key again is that task, once replicated", async () => {
    const { client, turns, close } = clientOn("{sr2}", 200);
    try {
      const input = { prompt: "hello", sessionId: "s1", idempotencyKey: "k1" };
      servers.replica.process.kill("SIGSTOP");
      let taskId: string;
      try {
        const err = await client.submit(input, { tenant: "acme" }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toMatchObject({
          code: "REDIS_UNAVAILABLE",
          retryable: true,
          message: expect.stringContaining("submit it again with the same idempotency key"),
        });
        taskId = (err as { details: { taskId: string } }).details.taskId;
        // Enqueued, in its session's order: a worker runs it whether or not the caller retries.
        expect((await client.status(taskId)).state).toBe("queued");
        expect(await turns.head(tenantOwnedId("acme", "session", "s1"))).toBe(taskId);
      } finally {
        servers.replica.process.kill("SIGCONT");
      }
      const again = clientOn("{sr2}", 10_000);
      try {
        expect(await again.client.submit(input, { tenant: "acme" })).toMatchObject({
          taskId,
          deduplicated: true,
        });
        expect(await onReplica.exists(`{sr2}:tasks:${taskId}`)).toBe(1);
      } finally {
        await again.close();
      }
    } finally {
      await close();
    }
  });

  it("a cancel the replica does not acknowledge in time fails retryable, naming the task; the cancel stands on the master", async () => {
    const { client, close } = clientOn("{sr3}", 10_000);
    const { taskId } = await client.submit({ prompt: "cancel me" }, { tenant: "acme" });
    await close();
    const stalled = clientOn("{sr3}", 200);
    try {
      servers.replica.process.kill("SIGSTOP");
      try {
        const err = await stalled.client.cancel(taskId).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toMatchObject({
          code: "REDIS_UNAVAILABLE",
          retryable: true,
          details: { taskId, replicas: { wanted: 1, acked: 0 } },
          message: expect.stringContaining(`The cancel of task ${taskId} is recorded, but 0 of 1`),
        });
      } finally {
        servers.replica.process.kill("SIGCONT");
      }
      // Queued, so removed at once: the master no longer has it.
      expect(await stalled.client.status(taskId).catch((e: { code: string }) => e.code)).toBe("NOT_FOUND");
    } finally {
      await stalled.close();
    }
    // Once the replica catches up it holds the cancel marker and not the job.
    await expect
      .poll(async () => [
        await onReplica.exists(`{sr3}:cancel:${taskId}`),
        await onReplica.exists(`{sr3}:tasks:${taskId}`),
      ])
      .toEqual([1, 0]);
  });
});
