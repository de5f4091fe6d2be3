import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AgentryClient } from "../client/agentry-client.js";
import { AgentWorker, type TaskHandler } from "../worker/agent-worker.js";
import type { AgentTaskResult } from "../tasks/catalog.js";

const logger = createLogger({ name: "test", level: "silent" });
const redis = useTestRedis("capped");

const result = (text: string): AgentTaskResult => ({
  text,
  steps: 1,
  usage: { input: 1, output: 1, cacheCreationInput: 0, cacheReadInput: 0 },
  costMicroUsd: 1,
  model: "scripted",
  finishedAt: Date.now(),
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await (closers.pop() as () => Promise<void>)();
});

/** A handler whose runs each wait for their prompt's gate to open; records the prompts it ran. */
function gatedHandler() {
  const gates = new Map<string, () => void>();
  const started: string[] = [];
  const handler: TaskHandler = async (ex) => {
    started.push(ex.payload.prompt);
    await new Promise<void>((resolve) => gates.set(ex.payload.prompt, resolve));
    return { type: "completed", result: result(ex.payload.prompt) };
  };
  const open = (prompt: string) => {
    const gate = gates.get(prompt);
    if (!gate) throw new Error(`${prompt} is not running`);
    gate();
  };
  return { handler, started, open };
}

function setup(handler: TaskHandler, reconcileEveryMs = 60_000) {
  const prefix = redis.freshPrefix();
  const client = new AgentryClient({ url: redis.url, prefix });
  const worker = new AgentWorker({
    url: redis.url,
    prefix,
    handler,
    logger,
    concurrency: 4,
    fairShare: { reconcileEveryMs },
  });
  closers.push(
    () => client.close(),
    () => worker.close(),
  );
  return { client, worker };
}

describe("AgentWorker with a tenant's maxRunning", () => {
  it("parks a task over the cap without running it, and runs it when the tenant's running task ends", async () => {
    const { handler, started, open } = gatedHandler();
    const { client, worker } = setup(handler);
    await client.setTenantSettings("acme", { maxRunning: 1 });
    await worker.start();
    const first = (await client.submit({ prompt: "first" }, { tenant: "acme" })).taskId;
    await expect.poll(() => started).toEqual(["first"]);
    const second = (await client.submit({ prompt: "second" }, { tenant: "acme" })).taskId;
    // Taken by the worker, held back, parked: queued for the user, delayed for BullMQ, no handler run.
    await expect
      .poll(async () => (await client.queue.getJob(second))?.data.parked?.reason)
      .toBe("tenant_capped");
    expect(await client.queue.getJobState(second)).toBe("delayed");
    expect((await client.status(second)).state).toBe("queued");
    expect(started).toEqual(["first"]);
    expect(await client.tenantLoad(["acme"])).toEqual([
      { tenant: "acme", maxRunning: 1, weight: 1, running: 1, waiting: 1 },
    ]);

    // The first ends: its slot goes to the second, which is woken at once (no reconcile runs here).
    open("first");
    await client.wait(first, { timeoutMs: 10_000 });
    await expect.poll(() => started).toEqual(["first", "second"]);
    open("second");
    await expect(client.wait(second, { timeoutMs: 10_000 })).resolves.toMatchObject({ text: "second" });
    expect(await client.tenantLoad(["acme"])).toEqual([
      { tenant: "acme", maxRunning: 1, weight: 1, running: 0, waiting: 0 },
    ]);
  });

  it("runs held-back tasks a raised cap allows on the reconcile beat, and other tenants meanwhile", async () => {
    const { handler, started, open } = gatedHandler();
    const { client, worker } = setup(handler, 200);
    await client.setTenantSettings("acme", { maxRunning: 1 });
    await worker.start();
    const ids = [];
    for (const prompt of ["a1", "a2", "a3"])
      ids.push((await client.submit({ prompt }, { tenant: "acme" })).taskId);
    const other = (await client.submit({ prompt: "b1" }, { tenant: "globex" })).taskId;
    await expect.poll(() => [...started].sort()).toEqual(["a1", "b1"]);
    await expect.poll(async () => (await client.tenantLoad(["acme"]))[0]?.waiting).toBe(2);

    await client.setTenantSettings("acme", { maxRunning: 3 });
    await expect.poll(() => [...started].sort()).toEqual(["a1", "a2", "a3", "b1"]);
    for (const prompt of ["a1", "a2", "a3", "b1"]) open(prompt);
    await Promise.all([...ids, other].map((id) => client.wait(id, { timeoutMs: 10_000 })));
  });

  it("forgets a cancelled held-back task: it never runs and no longer counts as waiting", async () => {
    const { handler, started, open } = gatedHandler();
    const { client, worker } = setup(handler);
    await client.setTenantSettings("acme", { maxRunning: 1 });
    await worker.start();
    const first = (await client.submit({ prompt: "first" }, { tenant: "acme" })).taskId;
    await expect.poll(() => started).toEqual(["first"]);
    const second = (await client.submit({ prompt: "second" }, { tenant: "acme" })).taskId;
    await expect.poll(async () => client.queue.getJobState(second)).toBe("delayed");
    await expect(client.cancel(second)).resolves.toEqual({ cancelled: true, state: "queued" });
    expect(await client.tenantLoad(["acme"])).toEqual([
      { tenant: "acme", maxRunning: 1, weight: 1, running: 1, waiting: 0 },
    ]);
    open("first");
    await client.wait(first, { timeoutMs: 10_000 });
    expect(started).toEqual(["first"]);
    expect(await client.queue.getJob(second)).toBeUndefined();
  });
});
