import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AuditLog, type AuditEntry } from "@agentry/governance";
import { useTestRedis } from "@agentry/testkit";
import { runAgentry, tempDir } from "../testing/run-agentry.js";

const redis = useTestRedis("admin-audit");
const dir = tempDir("audit");
afterAll(() => dir.remove());

/** A log with three entries, two of them task_a's. */
async function seededLog() {
  const prefix = redis.freshPrefix();
  const client = redis.client();
  const audit = new AuditLog({ redis: client, prefix });
  await audit.append({ type: "request", taskId: "task_a", tenant: "acme", data: { prompt: "delete db-7" } });
  await audit.append({ type: "request", taskId: "task_b", tenant: "acme", data: { prompt: "weather in Oslo" } });
  await audit.append({ type: "failure", taskId: "task_a", data: { code: "POLICY_DENIED", message: "no-prod-delete" } });
  return { env: { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix }, audit, client };
}

describe("agentry audit", () => {
  it("tails the last entries, optionally one task's", async () => {
    const { env } = await seededLog();
    const last2 = await runAgentry(["audit", "tail", "-n", "2", "--json"], env);
    expect(last2.code).toBe(0);
    expect((JSON.parse(last2.stdout) as AuditEntry[]).map((e) => e.seq)).toEqual([2, 3]);
    const taskA = await runAgentry(["audit", "tail", "--task", "task_a", "--json"], env);
    expect((JSON.parse(taskA.stdout) as AuditEntry[]).map((e) => [e.seq, e.type])).toEqual([
      [1, "request"],
      [3, "failure"],
    ]);
    const table = await runAgentry(["audit", "tail"], env);
    expect(table.stdout).toMatch(/^SEQ\s+TIME\s+TYPE\s+TASK\s+SUMMARY\n/);
    expect(table.stdout).toMatch(/3\s+\S+\s+failure\s+task_a\s+\[POLICY_DENIED\] no-prod-delete/);
  });

  it("verifies an intact chain", async () => {
    const { env } = await seededLog();
    const run = await runAgentry(["audit", "verify"], env);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("audit chain intact: 3 entries\n");
    const json = await runAgentry(["audit", "verify", "--json"], env);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, count: 3, lastSeq: 3 });
  });

  it("names a forged entry appended behind the log's back", async () => {
    const { env, audit, client } = await seededLog();
    const [last] = await audit.tail(1);
    const forged = { ...last, seq: 4, prevHash: last!.hash, type: "response", data: { text: "all good" }, hash: "f".repeat(64) };
    await client.xadd(audit.streamKey, "4-0", "e", JSON.stringify(forged));
    const run = await runAgentry(["audit", "verify"], env);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe("agentry: audit chain broken at seq 4 (id 4-0): hash-mismatch; 3 entries before it verified\n");
    const json = await runAgentry(["audit", "verify", "--json"], env);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, firstBad: { seq: 4, id: "4-0", reason: "hash-mismatch" } });
  });

  it("names the first entry after a deleted one, and an edited entry", async () => {
    const deleted = await seededLog();
    await deleted.client.xdel(deleted.audit.streamKey, "2-0");
    const run = await runAgentry(["audit", "verify"], deleted.env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^agentry: audit chain broken at seq 2 \(id 3-0\): seq-gap/);

    // An edit: entry 3 rewritten in place (delete and re-add at the end under a new id).
    const edited = await seededLog();
    const [third] = await edited.audit.tail(1);
    await edited.client.xdel(edited.audit.streamKey, "3-0");
    await edited.client.xadd(edited.audit.streamKey, "3-1", "e", JSON.stringify({ ...third, data: { code: "POLICY_DENIED", message: "nothing happened" } }));
    const run2 = await runAgentry(["audit", "verify"], edited.env);
    expect(run2.code).toBe(1);
    expect(run2.stderr).toMatch(/^agentry: audit chain broken at seq 3 \(id 3-1\): /);
    expect(run2.stderr.split("\n").filter(Boolean)).toHaveLength(1);
  });

  it("exports JSONL that verifies on its own, and detects an edited export", async () => {
    const { env } = await seededLog();
    const file = join(dir.path, "audit.jsonl");
    const exported = await runAgentry(["audit", "export", "--out", file, "--json"], env);
    expect(exported.code).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({ file, count: 3, lastSeq: 3 });
    const ok = await runAgentry(["audit", "verify", "--file", file], { REDIS_URL: "redis://127.0.0.1:1" });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe("audit chain intact: 3 entries\n");

    writeFileSync(file, readFileSync(file, "utf8").replace("weather in Oslo", "weather in Bergen"));
    const bad = await runAgentry(["audit", "verify", "--file", file], {});
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^agentry: audit chain broken at seq 2 \(id line 2\): hash-mismatch/);
  });
});
