import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { startRedisServer } from "@agentry/testkit";
import { DEFAULT_QUEUE_NAME } from "../tasks/catalog.js";
import { AgentryClient } from "./agentry-client.js";

// A caller waiting on a task rides through Redis going away (a restart, a failover): the task
// goes on, so its wait does too, and ends with the task's result.
describe("AgentryClient.wait while Redis restarts", () => {
  it("keeps waiting through the outage and returns the result", async () => {
    let server = await startRedisServer({ appendonly: true });
    onTestFinished(() => server.stop());
    const { port, dir } = server;
    const prefix = "{wait-restart}";
    const client = new AgentryClient({ url: server.url, prefix });
    onTestFinished(() => client.close());
    const { taskId } = await client.submit({ prompt: "hello" }, { tenant: "acme" });
    // The wait polls the task's status: note each poll Redis did not answer.
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
    const outcome = client.wait(taskId, { timeoutMs: 60_000 }).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );

    // Once the wait is polling, Redis goes away.
    await vi.waitFor(() => expect(polls).toHaveBeenCalled(), { timeout: 20_000, interval: 50 });
    await server.kill();
    // A poll of the wait meets the outage, and the wait goes on.
    await vi.waitFor(
      () => expect(unanswered).toHaveBeenCalledWith(expect.objectContaining({ code: "REDIS_UNAVAILABLE" })),
      {
        timeout: 20_000,
        interval: 100,
      },
    );
    server = await startRedisServer({ appendonly: true, port, dir });

    // A worker takes the task and completes it.
    const connection = new Redis(server.port, "127.0.0.1", { maxRetriesPerRequest: null });
    const worker = new Worker(DEFAULT_QUEUE_NAME, async () => ({ text: "done", steps: 1 }), {
      connection,
      prefix,
    });
    onTestFinished(async () => {
      await worker.close();
      connection.disconnect();
    });
    expect(await outcome).toEqual({ result: { text: "done", steps: 1 } });
  }, 90_000);

  it("a wait begun while Redis is away keeps its timeout, and one that outlasts the outage returns the result", async () => {
    let server = await startRedisServer({ appendonly: true });
    onTestFinished(() => server.stop());
    const { port, dir } = server;
    const prefix = "{wait-away}";
    const client = new AgentryClient({ url: server.url, prefix });
    onTestFinished(() => client.close());
    const { taskId } = await client.submit({ prompt: "hello" }, { tenant: "acme" });
    await server.kill();

    // The wait ends at its deadline, saying why it could not tell: nothing of it waits for Redis
    // to come back (its queue-events reader would).
    await expect(client.wait(taskId, { timeoutMs: 1_500 })).rejects.toMatchObject({
      code: "REDIS_UNAVAILABLE",
    });

    const status = client.status.bind(client);
    const unanswered = vi.fn();
    vi.spyOn(client, "status").mockImplementation(async (...args) => {
      try {
        return await status(...args);
      } catch (err) {
        unanswered(err);
        throw err;
      }
    });
    const outcome = client.wait(taskId, { timeoutMs: 60_000 }).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    await vi.waitFor(
      () => expect(unanswered).toHaveBeenCalledWith(expect.objectContaining({ code: "REDIS_UNAVAILABLE" })),
      { timeout: 20_000, interval: 100 },
    );
    server = await startRedisServer({ appendonly: true, port, dir });
    const connection = new Redis(server.port, "127.0.0.1", { maxRetriesPerRequest: null });
    const worker = new Worker(DEFAULT_QUEUE_NAME, async () => ({ text: "done", steps: 1 }), {
      connection,
      prefix,
    });
    onTestFinished(async () => {
      await worker.close();
      connection.disconnect();
    });
    expect(await outcome).toEqual({ result: { text: "done", steps: 1 } });
  }, 90_000);
});
