import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { startRedisServer } from "@agentry/testkit";
import { DEFAULT_QUEUE_NAME } from "../tasks/catalog.js";
import { AgentryClient } from "./agentry-client.js";

/** Spies on the client's status polls: every poll, and every one Redis did not answer. */
function spyPolls(client: AgentryClient) {
  const status = client.status.bind(client);
  const polls = vi.fn();
  const unanswered = vi.fn();
  vi.spyOn(client, "status").mockImplementation(async (...args) => {
    polls();
    try {
      return await status(...args);
    } catch (err) {
      unanswered(err);
      throw err;
    }
  });
  return { polls, unanswered };
}

/** A poll of a wait has met the outage (and the wait goes on). */
async function pollMetOutage(unanswered: ReturnType<typeof vi.fn>): Promise<void> {
  await vi.waitFor(
    () => expect(unanswered).toHaveBeenCalledWith(expect.objectContaining({ code: "REDIS_UNAVAILABLE" })),
    { timeout: 20_000, interval: 100 },
  );
}

/**
 * A task queued on a private Redis (append-only, so a restart keeps it), and a client for it.
 * `kill` stops Redis; `restart` starts it again on the same port and data, with a BullMQ worker
 * that completes the task with `{ text: "done", steps: 1 }`.
 */
async function queuedTask(prefix: string) {
  let server = await startRedisServer({ appendonly: true });
  onTestFinished(() => server.stop());
  const client = new AgentryClient({ url: server.url, prefix });
  onTestFinished(() => client.close());
  const { taskId } = await client.submit({ prompt: "hello" }, { tenant: "acme" });
  return {
    client,
    taskId,
    kill: () => server.kill(),
    async restart() {
      server = await startRedisServer({ appendonly: true, port: server.port, dir: server.dir });
      const connection = new Redis(server.port, "127.0.0.1", { maxRetriesPerRequest: null });
      const worker = new Worker(DEFAULT_QUEUE_NAME, async () => ({ text: "done", steps: 1 }), {
        connection,
        prefix,
      });
      onTestFinished(async () => {
        await worker.close();
        connection.disconnect();
      });
    },
  };
}

/** The outcome of a wait, settled either way. */
const settle = <T>(waiting: Promise<T>) =>
  waiting.then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );

// A caller waiting on a task rides through Redis going away (a restart, a failover): the task
// goes on, so its wait does too, and ends with the task's result.
describe("AgentryClient.wait while Redis restarts", () => {
  it("keeps waiting through the outage and returns the result", async () => {
    const task = await queuedTask("{wait-restart}");
    // The wait polls the task's status: note each poll Redis did not answer.
    const { polls, unanswered } = spyPolls(task.client);
    const outcome = settle(task.client.wait(task.taskId, { timeoutMs: 60_000 }));

    // Once the wait is polling, Redis goes away.
    await vi.waitFor(() => expect(polls).toHaveBeenCalled(), { timeout: 20_000, interval: 50 });
    await task.kill();
    await pollMetOutage(unanswered);
    // Redis is back, and a worker takes the task and completes it.
    await task.restart();
    expect(await outcome).toEqual({ result: { text: "done", steps: 1 } });
  }, 90_000);

  it("a wait begun while Redis is away keeps its timeout, and one that outlasts the outage returns the result", async () => {
    const task = await queuedTask("{wait-away}");
    await task.kill();

    // The wait ends at its deadline, saying why it could not tell: nothing of it waits for Redis
    // to come back (its queue-events reader would).
    await expect(task.client.wait(task.taskId, { timeoutMs: 1_500 })).rejects.toMatchObject({
      code: "REDIS_UNAVAILABLE",
    });

    const { unanswered } = spyPolls(task.client);
    const outcome = settle(task.client.wait(task.taskId, { timeoutMs: 60_000 }));
    await pollMetOutage(unanswered);
    await task.restart();
    expect(await outcome).toEqual({ result: { text: "done", steps: 1 } });
  }, 90_000);
});
