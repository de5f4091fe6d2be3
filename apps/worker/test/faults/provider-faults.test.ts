import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import { fakeReply, useTestRedis, type FakeReply, type RecordedRequest } from "@agentry/testkit";
import { budgetEntries, startFaultCluster, type FaultCluster } from "./harness.js";

// The provider misbehaves: overload and server-error storms, bodies that are not JSON or not a
// message, connections dropped without an answer. Tasks retry (the queue's backoff; the SDK
// itself does not retry) and complete, or fail with a typed error after their attempts; none
// hangs, none is lost, and no budget stays reserved. 429 storms: see ../multi-process.test.ts.

const redis = useTestRedis("faults-provider");
let cluster: FaultCluster;
/** Per-test override of the fake's answer; `undefined` = the reference rules. */
let rule: ((req: RecordedRequest) => FakeReply | undefined) | undefined;

beforeAll(async () => {
  cluster = await startFaultCluster({
    redisUrl: redis.url,
    prefix: redis.freshPrefix(),
    conn: redis.client(),
    reply: (req) => rule?.(req),
  });
  await Promise.all([cluster.startWorker("p1"), cluster.startWorker("p2")]);
}, 120_000);
afterAll(async () => {
  await cluster.close();
});
beforeEach(() => {
  rule = undefined;
  cluster.fake.reset();
});

function lastUserText(req: RecordedRequest): string {
  const first = req.body.messages?.[0];
  return typeof first?.content === "string" ? first.content : "";
}

describe("provider faults", () => {
  it("rides out a storm of 529 overloaded and 500 errors: every task completes, nothing stays reserved", async () => {
    const overloads = 10;
    const serverErrors = 6;
    for (let i = 0; i < overloads; i++) cluster.fake.fail(fakeReply.overloaded());
    for (let i = 0; i < serverErrors; i++)
      cluster.fake.fail(
        i % 2 === 0 ? fakeReply.serverError(500) : fakeReply.serverError(503, "Service unavailable"),
      );
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await cluster.submit(`What's the weather in Overload${i}?`));
    const results = await Promise.all(ids.map((id) => cluster.client.wait(id, { timeoutMs: 120_000 })));
    expect(results.every((r) => r.steps === 2)).toBe(true);
    expect(cluster.fake.pending()).toBe(0);

    const budget = budgetEntries(await cluster.auditEntries()).filter((e) => ids.includes(e.taskId ?? ""));
    // 529: the provider did no work, the reservation is released. 5xx: it may have, so it is
    // settled at its reserved amount (never under-count).
    expect(budget.filter((e) => e.data.event === "released")).toHaveLength(overloads);
    expect(budget.filter((e) => e.data.event === "settled-at-reserved")).toHaveLength(serverErrors);
    const stats = await cluster.ledger.getStats("tenant:acme");
    expect(stats.reserved.tokens).toBe(0);
    expect((await cluster.audit.verify()).ok).toBe(true);
  }, 150_000);

  it("retries garbage (not JSON, not a message, dropped connections) and completes every task", async () => {
    const garbage: FakeReply[] = [
      fakeReply.malformed(),
      fakeReply.malformed("<html><body>502 Bad Gateway</body></html>"),
      fakeReply.malformed(JSON.stringify({ type: "message", role: "assistant", content: "not a list" })),
      fakeReply.malformed(JSON.stringify({ hello: "world" })),
      fakeReply.malformed("null"),
      fakeReply.drop(),
      fakeReply.drop(),
      { kind: "drop", delayMs: 300 },
    ];
    cluster.fake.fail(...garbage);
    const ids: string[] = [];
    for (let i = 0; i < 8; i++)
      ids.push(
        await cluster.submit(
          i % 2 === 0 ? `What's the weather in Garbage${i}?` : `delete junk-${i} in development`,
        ),
      );
    const results = await Promise.all(ids.map((id) => cluster.client.wait(id, { timeoutMs: 120_000 })));
    expect(results).toHaveLength(8);
    for (const id of ids) expect((await cluster.client.status(id)).state).toBe("completed");
    expect(cluster.fake.pending()).toBe(0);
    // A garbled answer is never mistaken for a tool call: one deletion per delete task.
    const deleted = (await cluster.deletions()).map((d) => d.taskId).sort();
    expect(deleted).toEqual(ids.filter((_, i) => i % 2 === 1).sort());
    expect((await cluster.ledger.getStats("tenant:acme")).reserved.tokens).toBe(0);
  }, 150_000);

  it("fails a task whose provider only ever answers garbage with PROVIDER_BAD_RESPONSE after its attempts, and keeps serving others", async () => {
    rule = (req) => (lastUserText(req).includes("hopeless") ? fakeReply.malformed() : undefined);
    const hopeless = await cluster.submit("What's the weather in a hopeless place?");
    const fine = await cluster.submit("What's the weather in Fineville?");
    await expect(cluster.client.wait(fine, { timeoutMs: 60_000 })).resolves.toMatchObject({ steps: 2 });

    const failure = await cluster.client.wait(hopeless, { timeoutMs: 120_000 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(AgentryError.isInstance(failure) && failure.code).toBe("PROVIDER_BAD_RESPONSE");
    const status = await cluster.client.status(hopeless);
    expect(status.state).toBe("failed");
    expect(status.attempts).toBe(5);
    // Each attempt asked once; no attempt hung.
    expect(cluster.modelRequests().filter((r) => lastUserText(r).includes("hopeless"))).toHaveLength(5);
    const failures = (await cluster.auditEntries()).filter(
      (e) => e.taskId === hopeless && e.type === "failure",
    );
    expect(failures).toHaveLength(1);
    expect((await cluster.ledger.getStats("tenant:acme")).reserved.tokens).toBe(0);
  }, 150_000);
});
