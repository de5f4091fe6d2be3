import { describe, expect, it } from "vitest";
import { toolJournalConformance } from "@agentry/agent/testing";
import { useTestRedis } from "@agentry/testkit";
import type { RunContext } from "@agentry/agent";
import type { ToolUseBlock } from "@agentry/llm";
import { RedisToolJournal } from "./tool-journal.js";

const redis = useTestRedis("journal");
// A claim that lapses at once: the contract's "interrupted" without waiting for a claimant.
toolJournalConformance(
  "RedisToolJournal",
  () => new RedisToolJournal({ redis: redis.client(), prefix: redis.freshPrefix(), claimMs: 1 }),
);

const run: RunContext = { taskId: "t1", tenant: "acme", userId: "u1", sessionId: "s1" };
const call: ToolUseBlock = {
  type: "tool_use",
  id: "toolu_1",
  name: "delete_resource",
  input: { resource: "db-7" },
};

describe("RedisToolJournal across attempts", () => {
  it("a later attempt waits for a live claimant's result instead of calling the call interrupted", async () => {
    const prefix = redis.freshPrefix();
    const stale = new RedisToolJournal({ redis: redis.client(), prefix, claimMs: 30_000, pollMs: 20 });
    const next = new RedisToolJournal({ redis: redis.client(), prefix, claimMs: 30_000, pollMs: 20 });
    expect(await stale.begin(run, call)).toEqual({ status: "fresh" });
    const waiting = next.begin(run, call);
    // The stale attempt's tool finishes (e.g. its lock lapsed while Redis was away) and records it.
    const result = { type: "tool_result" as const, toolUseId: call.id, content: '{"deleted":"db-7"}' };
    await stale.complete(run, call, result);
    expect(await waiting).toEqual({ status: "done", result });
  });

  it("an abandoned claim (the claimant was stopped mid-call) is reported interrupted at once", async () => {
    const prefix = redis.freshPrefix();
    const stopped = new RedisToolJournal({ redis: redis.client(), prefix, claimMs: 60_000, pollMs: 20 });
    expect(await stopped.begin(run, call)).toEqual({ status: "fresh" });
    await stopped.abandon(run, call);
    expect(
      await new RedisToolJournal({ redis: redis.client(), prefix, claimMs: 60_000 }).begin(run, call),
    ).toEqual({ status: "interrupted" });
  });

  it("reports interrupted once the claim has lapsed without a result", async () => {
    const prefix = redis.freshPrefix();
    const dead = new RedisToolJournal({ redis: redis.client(), prefix, claimMs: 300, pollMs: 20 });
    expect(await dead.begin(run, call)).toEqual({ status: "fresh" });
    expect(
      await new RedisToolJournal({ redis: redis.client(), prefix, pollMs: 20 }).begin(run, call),
    ).toEqual({ status: "interrupted" });
  });

  it("an attempt that lost its job lock claims no call, not even one the journal never saw", async () => {
    const prefix = redis.freshPrefix();
    const conn = redis.client();
    const lock = `${prefix}:tasks:t1:lock`;
    await conn.set(lock, "next-attempt");
    const journal = new RedisToolJournal({ redis: conn, prefix });
    // Named by its tenant, as every tenant-owned key is.
    expect(journal.entryKey(run, call.id)).toBe(`${prefix}:tool-journal:tenant:acme:task:t1:toolu_1`);
    const stale: RunContext = { ...run, fence: { key: lock, token: "stale-attempt" } };
    await expect(journal.begin(stale, call)).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(await conn.exists(journal.entryKey(run, call.id))).toBe(0);
    // The attempt holding the lock claims it.
    const owner: RunContext = { ...run, fence: { key: lock, token: "next-attempt" } };
    expect(await journal.begin(owner, call)).toEqual({ status: "fresh" });
    // Once the task has completed its lock is gone: nothing more is claimed.
    await conn.del(lock);
    const other = { ...call, id: "toolu_2" };
    await expect(journal.begin(owner, other)).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(await conn.exists(journal.entryKey(run, other.id))).toBe(0);
  });

  it("a result recorded after the completed task dropped its entry leaves nothing behind", async () => {
    const prefix = redis.freshPrefix();
    const conn = redis.client();
    const journal = new RedisToolJournal({ redis: conn, prefix });
    expect(await journal.begin(run, call)).toEqual({ status: "fresh" });
    await conn.unlink(journal.entryKey(run, call.id));
    await journal.complete(run, call, { type: "tool_result", toolUseId: call.id, content: "late" });
    expect(await conn.keys(`${prefix}:tool-journal:*`)).toEqual([]);
  });
});
