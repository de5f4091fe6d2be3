import { afterEach, describe, expect, it } from "vitest";
import { AgentryError, createLogger } from "@agentry/core";
import { startRedisServer, useTestRedis } from "@agentry/testkit";
import { AgentryClient } from "../client/agentry-client.js";
import { AgentWorker } from "../worker/agent-worker.js";

const logger = createLogger({ name: "test", level: "silent" });
const redis = useTestRedis("fanout");
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

function setup(url = redis.url) {
  const prefix = redis.freshPrefix();
  const client = new AgentryClient({ url, prefix });
  const workers = [1, 2].map(
    (n) =>
      new AgentWorker({
        url,
        prefix,
        logger,
        concurrency: 2,
        handler: async (ex) => {
          if (ex.payload.prompt.startsWith("fail"))
            throw new AgentryError("INVALID_INPUT", `cannot do "${ex.payload.prompt}"`);
          return {
            type: "completed",
            result: {
              text: `w${n}: ${ex.payload.prompt}`,
              steps: 1,
              usage: { input: 1, output: 1, cacheCreationInput: 0, cacheReadInput: 0 },
              costMicroUsd: 1,
              model: "m",
              finishedAt: Date.now(),
            },
          };
        },
      }),
  );
  closers.push(() => client.close(), ...workers.map((w) => () => w.close()));
  return { client, workers };
}

describe("fan-out groups", () => {
  it("runs the children on any worker and collects every result (all-settled)", async () => {
    const { client, workers } = setup();
    await Promise.all(workers.map((w) => w.start()));
    const { groupId, taskIds } = await client.submitGroup(
      [{ prompt: "a" }, { prompt: "fail b" }, { prompt: "c" }, { prompt: "d" }],
      { tenant: "acme" },
    );
    await expect
      .poll(async () => (await client.groupResult(groupId)).state, { timeout: 15_000 })
      .toBe("completed");
    const { result } = await client.groupResult(groupId);
    expect(result?.children.map((c) => c.taskId)).toEqual(taskIds);
    const byId = new Map(result?.children.map((c) => [c.taskId, c]));
    expect(byId.size).toBe(4);
    expect(byId.get(taskIds[0] as string)).toMatchObject({ status: "completed" });
    expect(byId.get(taskIds[1] as string)).toMatchObject({
      status: "failed",
      error: expect.stringContaining("INVALID_INPUT"),
    });
    expect(byId.get(taskIds[3] as string)).toMatchObject({ status: "completed" });
    for (const id of taskIds) expect((await client.status(id)).tenant).toBe("acme");
  });

  it("fails the group when a child fails under fail-fast", async () => {
    const { client, workers } = setup();
    await Promise.all(workers.map((w) => w.start()));
    const { groupId } = await client.submitGroup(
      [{ prompt: "a" }, { prompt: "fail b" }],
      { tenant: "acme" },
      { failurePolicy: "fail-fast" },
    );
    await expect
      .poll(async () => (await client.groupResult(groupId)).state, { timeout: 15_000 })
      .toBe("failed");
  });

  it("refuses an empty group", async () => {
    const { client } = setup();
    await expect(client.submitGroup([], { tenant: "acme" })).rejects.toMatchObject({ code: "INVALID_INPUT" });
  });

  it("a group submitted after the server lost its script cache (flushed under the connection) is created whole and runs", async () => {
    // A private server: flushing the shared one's script cache would disturb other suites.
    const server = await startRedisServer();
    closers.push(() => server.stop());
    const { client, workers } = setup(server.url);
    await Promise.all(workers.map((w) => w.start()));
    const first = await client.submitGroup([{ prompt: "a" }, { prompt: "b" }], { tenant: "acme" });
    await expect
      .poll(async () => (await client.groupResult(first.groupId)).state, { timeout: 15_000 })
      .toBe("completed");
    // The client's connection goes on sending EVALSHA inside the flow's MULTI.
    await client.redis.script("FLUSH");
    const { groupId, taskIds } = await client.submitGroup([{ prompt: "c" }, { prompt: "d" }], {
      tenant: "acme",
    });
    await expect
      .poll(async () => (await client.groupResult(groupId)).state, { timeout: 15_000 })
      .toBe("completed");
    const { result } = await client.groupResult(groupId);
    expect(result?.children.map((c) => [c.taskId, c.status])).toEqual(taskIds.map((id) => [id, "completed"]));
  });
});
