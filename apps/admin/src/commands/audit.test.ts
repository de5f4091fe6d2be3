import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AuditLog, entryHash, type AuditEntry } from "@agentry/governance";
import { useTestRedis } from "@agentry/testkit";
import { runAgentry, tempDir } from "../testing/run-agentry.js";

const redis = useTestRedis("admin-audit");
const dir = tempDir("audit");
afterAll(() => dir.remove());

const KEY = "cli-test-audit-key-0123456789abcdefghij";

/** A log with three entries, two of them task_a's; authenticated with `key` when given. */
async function seededLog(key?: string) {
  const prefix = redis.freshPrefix();
  const client = redis.client();
  const audit = new AuditLog({ redis: client, prefix, ...(key ? { key } : {}) });
  await audit.append({ type: "request", taskId: "task_a", tenant: "acme", data: { prompt: "delete db-7" } });
  await audit.append({
    type: "request",
    taskId: "task_b",
    tenant: "acme",
    data: { prompt: "weather in Oslo" },
  });
  await audit.append({
    type: "failure",
    taskId: "task_a",
    data: { code: "POLICY_DENIED", message: "no-prod-delete" },
  });
  return {
    env: { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix, ...(key ? { AGENTRY_AUDIT_KEY: key } : {}) },
    audit,
    client,
  };
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
    expect(run.stdout).toBe("audit chain intact: 3 entries, unauthenticated\n");
    expect(run.stderr).toMatch(/^warning: AGENTRY_AUDIT_KEY is not set/);
    const json = await runAgentry(["audit", "verify", "--json"], env);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, count: 3, lastSeq: 3 });
  });

  it("names a forged entry appended behind the log's back, with or without moving the head", async () => {
    const { env, audit, client } = await seededLog();
    const [last] = await audit.tail(1);
    const forged = {
      ...last,
      seq: 4,
      prevHash: last!.hash,
      type: "response",
      data: { text: "all good" },
      hash: "f".repeat(64),
    };
    await client.xadd(audit.streamKey, "4-0", "e", JSON.stringify(forged));
    const run = await runAgentry(["audit", "verify"], env);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(
      "agentry: audit chain broken at seq 4 (id 4-0): beyond-head (the stream reaches seq 4 but the head is seq 3); 3 entries before it verified\n",
    );
    await client.hset(audit.headKey, "seq", 4, "hash", forged.hash);
    const moved = await runAgentry(["audit", "verify"], env);
    expect(moved.stderr).toBe(
      "agentry: audit chain broken at seq 4 (id 4-0): hash-mismatch; 3 entries before it verified\n",
    );
    const json = await runAgentry(["audit", "verify", "--json"], env);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      firstBad: { seq: 4, id: "4-0", reason: "hash-mismatch" },
    });
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
    await edited.client.xadd(
      edited.audit.streamKey,
      "3-1",
      "e",
      JSON.stringify({ ...third, data: { code: "POLICY_DENIED", message: "nothing happened" } }),
    );
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
    expect(ok.stdout).toBe("audit chain intact: 3 entries, unauthenticated\n");

    writeFileSync(file, readFileSync(file, "utf8").replace("weather in Oslo", "weather in Bergen"));
    const bad = await runAgentry(["audit", "verify", "--file", file], {});
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^agentry: audit chain broken at seq 2 \(id line 2\): hash-mismatch/);
  });

  it("with AGENTRY_AUDIT_KEY: intact and authenticated; a forged entry with a recomputed plain hash fails", async () => {
    const { env, audit, client } = await seededLog(KEY);
    const run = await runAgentry(["audit", "verify"], env);
    expect(run).toMatchObject({
      code: 0,
      stdout: "audit chain intact: 3 entries, authenticated\n",
      stderr: "",
    });

    const wrongKey = await runAgentry(["audit", "verify"], { ...env, AGENTRY_AUDIT_KEY: "x".repeat(40) });
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(
      /^agentry: audit chain broken at seq 1 \(id 1-0\): unknown-key \(key id [0-9a-f]{16} is not configured\)/,
    );

    const [last] = await audit.tail(1);
    const forged = {
      ...last,
      seq: 4,
      prevHash: last!.hash,
      type: "response",
      data: { text: "all good" },
    } as AuditEntry;
    delete forged.kid;
    forged.hash = entryHash(forged);
    await client.xadd(audit.streamKey, "4-0", "e", JSON.stringify(forged));
    await client.hset(audit.headKey, "seq", 4, "hash", forged.hash);
    const broken = await runAgentry(["audit", "verify"], env);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/^agentry: audit chain broken at seq 4 \(id 4-0\): unauthenticated/);
  });

  it("anchors: `audit anchor` appends a checkpoint; `verify --anchors` names truncation and deletion", async () => {
    const { env, audit, client } = await seededLog(KEY);
    const anchors = join(dir.path, `anchors-${Date.now()}.jsonl`);
    const first = await runAgentry(["audit", "anchor", "--out", anchors], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      new RegExp(
        `^anchored seq 3 \\(hash [0-9a-f]{16}…\\) at \\S+ to ${anchors.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\n$`,
      ),
    );
    await audit.append({ type: "request", taskId: "task_c", data: { prompt: "hi" } });
    const second = await runAgentry(["audit", "anchor", "--out", anchors, "--json"], env);
    expect(JSON.parse(second.stdout)).toMatchObject({ file: anchors, seq: 4, verified: 1 });
    expect(readFileSync(anchors, "utf8").trim().split("\n")).toHaveLength(2);

    const ok = await runAgentry(["audit", "verify", "--anchors", anchors], env);
    expect(ok).toMatchObject({
      code: 0,
      stdout: "audit chain intact: 4 entries, authenticated, consistent with 2 anchors\n",
    });

    // The last two entries deleted and the head reset to entry 2.
    const [, second2] = await audit.read({ count: 2 });
    await client.xdel(audit.streamKey, "3-0", "4-0");
    await client.hset(audit.headKey, "seq", 2, "hash", second2!.hash);
    expect((await runAgentry(["audit", "verify"], env)).code).toBe(0);
    const truncated = await runAgentry(["audit", "verify", "--anchors", anchors], env);
    expect(truncated.code).toBe(1);
    expect(truncated.stderr).toMatch(
      /^agentry: audit chain broken at seq 3: anchor-beyond-head \(anchor of \S+ \(line 1\) covers seq 3 but the log ends at seq 2: entries were truncated or deleted\)/,
    );
    const refused = await runAgentry(["audit", "anchor", "--out", anchors], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^agentry: not anchored: audit chain broken at seq 4: anchor-beyond-head/);

    // The whole log and its head deleted.
    await client.del(audit.streamKey, audit.headKey);
    const gone = await runAgentry(["audit", "verify", "--anchors", anchors, "--json"], env);
    expect(gone.code).toBe(1);
    expect(JSON.parse(gone.stdout)).toMatchObject({
      ok: false,
      firstBad: { seq: 3, reason: "anchor-beyond-head" },
    });
  });

  it("anchor refuses without a key; verify refuses an edited anchors file and a missing one", async () => {
    const plain = await seededLog();
    const anchors = join(dir.path, `anchors-plain-${Date.now()}.jsonl`);
    const noKey = await runAgentry(["audit", "anchor", "--out", anchors], plain.env);
    expect(noKey).toMatchObject({
      code: 1,
      stdout: "",
      stderr: "agentry: AGENTRY_AUDIT_KEY is not set: an anchor must be authenticated\n",
    });

    const { env } = await seededLog(KEY);
    expect((await runAgentry(["audit", "anchor", "--out", anchors], env)).code).toBe(0);
    writeFileSync(anchors, readFileSync(anchors, "utf8").replace(/"seq":3/, '"seq":2'));
    const edited = await runAgentry(["audit", "verify", "--anchors", anchors], env);
    expect(edited.code).toBe(1);
    expect(edited.stderr).toBe(
      "agentry: audit anchors refused at anchors line 1: bad-anchor (MAC does not match (edited or forged))\n",
    );
    const missing = await runAgentry(["audit", "verify", "--anchors", join(dir.path, "nope.jsonl")], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^agentry: cannot read .*nope\.jsonl: ENOENT/);
    const both = await runAgentry(["audit", "verify", "--anchors", anchors, "--file", anchors], env);
    expect(both.code).toBe(2);
  });
});
