import { beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { useRedisReplicated } from "@agentry/testkit";
import type { RunContext } from "@agentry/agent";
import type { ToolUseBlock } from "@agentry/llm";
import { RedisToolJournal } from "./tool-journal.js";

// A claim the master acknowledged but had not yet sent to its replica is lost when the replica
// takes over; with waitReplicas the tool runs only once a replica holds its claim.
const servers = useRedisReplicated();
let onReplica: Redis;
let conn: Redis;

beforeAll(() => {
  onReplica = servers.connect(servers.replica);
  conn = servers.connect(servers.master, { maxRetriesPerRequest: null });
});

const run: RunContext = { taskId: "t1", tenant: "acme", userId: "u1", sessionId: "s1" };
const callOf = (id: string): ToolUseBlock => ({ type: "tool_use", id, name: "delete_resource", input: {} });

describe("RedisToolJournal with waitReplicas", () => {
  it("a fresh claim is on the replica by the time the tool may run", async () => {
    const journal = new RedisToolJournal({
      redis: conn,
      prefix: "{wr1}",
      waitReplicas: 1,
      waitTimeoutMs: 10_000,
    });
    for (const id of ["toolu_1", "toolu_2", "toolu_3"]) {
      expect(await journal.begin(run, callOf(id))).toEqual({ status: "fresh" });
      // No waiting here: WAIT returned once the replica acknowledged the claim.
      expect(await onReplica.get(journal.entryKey(run, id))).toBe("started");
    }
  });

  it("a claim the replica does not acknowledge in time is withdrawn and the attempt stops, retryable, before the tool runs", async () => {
    const prefix = "{wr2}";
    const journal = new RedisToolJournal({ redis: conn, prefix, waitReplicas: 1, waitTimeoutMs: 200 });
    const call = callOf("toolu_stuck");
    const entry = journal.entryKey(run, call.id);
    // The replica stops answering (a stalled host, a partition).
    servers.replica.process.kill("SIGSTOP");
    try {
      await expect(journal.begin(run, call)).rejects.toMatchObject({
        code: "REDIS_UNAVAILABLE",
        retryable: true,
        message: expect.stringContaining("0 of 1 replica(s) acknowledged it within 200 ms"),
      });
      // Nothing is left claimed: the retry claims the call afresh, it is not "interrupted".
      expect(await conn.exists(entry, `${entry}:claim`)).toBe(0);
    } finally {
      servers.replica.process.kill("SIGCONT");
    }
    const retry = new RedisToolJournal({ redis: conn, prefix, waitReplicas: 1, waitTimeoutMs: 10_000 });
    expect(await retry.begin(run, call)).toEqual({ status: "fresh" });
    expect(await onReplica.get(entry)).toBe("started");
  });

  it("asking for more replicas than the master has fails every claim, and leaves none", async () => {
    const journal = new RedisToolJournal({
      redis: conn,
      prefix: "{wr3}",
      waitReplicas: 2,
      waitTimeoutMs: 100,
    });
    const call = callOf("toolu_x");
    await expect(journal.begin(run, call)).rejects.toMatchObject({
      code: "REDIS_UNAVAILABLE",
      message: expect.stringContaining("1 of 2 replica(s)"),
    });
    expect(await conn.exists(journal.entryKey(run, call.id))).toBe(0);
  });

  it("claims go on the connection given for them", async () => {
    const claims = new Redis(servers.master.port, "127.0.0.1", { connectionName: "journal-claims" });
    try {
      const journal = new RedisToolJournal({
        redis: conn,
        prefix: "{wr4}",
        waitReplicas: 1,
        claimRedis: claims,
      });
      expect(await journal.begin(run, callOf("toolu_c"))).toEqual({ status: "fresh" });
      const list = String(await conn.client("LIST"));
      const line = list.split("\n").find((l) => l.includes("name=journal-claims"));
      // Its last command was the WAIT that followed the claim.
      expect(line).toMatch(/cmd=wait/);
    } finally {
      claims.disconnect();
    }
  });
});
