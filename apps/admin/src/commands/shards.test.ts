import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pinShardCount, shardCountKey, shardPrefixes } from "@agentry/core";
import { ApprovalStore, AuditLog, type ApprovalRecord, type AuditEntry } from "@agentry/governance";
import { useTestRedis } from "@agentry/testkit";
import { rollBackLastEntry } from "../testing/audit-tamper.js";
import { runAgentry, tempDir } from "../testing/run-agentry.js";

// The CLI of a deployment with AGENTRY_SHARDS=3 sees every shard: approvals on any shard, and
// every audit chain (the global one and each shard's).
const redis = useTestRedis("admin-shards");
const dir = tempDir("shards");
afterAll(() => dir.remove());
const KEY = "cli-shards-audit-key-0123456789abcdefgh";

async function deployment() {
  const prefix = redis.freshPrefix();
  const client = redis.client();
  const shards = shardPrefixes(prefix, 3);
  const chains = [prefix, ...shards].map((p) => new AuditLog({ redis: client, prefix: p, key: KEY }));
  for (const [i, chain] of chains.entries())
    for (let k = 0; k <= i; k++)
      await chain.append({
        type: "request",
        taskId: `task_${i}_${k}`,
        tenant: "acme",
        data: { prompt: `p${i}.${k}` },
      });
  const env = { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix, AGENTRY_SHARDS: "3", AGENTRY_AUDIT_KEY: KEY };
  return { prefix, client, shards, chains, env };
}

describe("agentry with AGENTRY_SHARDS=3", () => {
  it("lists and shows approvals of every shard", async () => {
    const d = await deployment();
    const ids: string[] = [];
    for (const [i, prefix] of d.shards.entries()) {
      const { record } = await new ApprovalStore({ redis: d.client, prefix }).request({
        taskId: `task_shard_${i}`,
        toolUseId: `toolu_${i}`,
        action: {
          tool: "delete_resource",
          input: { resource: `db-${i}`, env: "staging" },
          taskId: `task_shard_${i}`,
          tenant: "acme",
          userId: "u1",
          sessionId: "s1",
        },
        approvers: ["alice"],
        quorum: 1,
        ttlMs: 600_000 + i,
        reason: "needs a human",
      });
      ids.push(record.id);
    }
    const list = await runAgentry(["approvals", "list", "--json"], d.env);
    expect(list.code).toBe(0);
    // Pending ones by expiry, as one store lists them.
    expect((JSON.parse(list.stdout) as ApprovalRecord[]).map((r) => r.id)).toEqual(ids);
    const show = await runAgentry(["approvals", "show", ids[2] as string, "--json"], d.env);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ id: ids[2], taskId: "task_shard_2" });
    const unknown = await runAgentry(["approvals", "show", "apr_nope"], d.env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("unknown approval apr_nope");
  });

  it("refuses to run on another shard count than the deployment's, saying what to set", async () => {
    const d = await deployment();
    await pinShardCount(d.client, d.prefix, 3);
    const wrong = await runAgentry(["approvals", "list", "--json"], { ...d.env, AGENTRY_SHARDS: "2" });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain(
      `AGENTRY_SHARDS=2, but the deployment on AGENTRY_PREFIX=${d.prefix} runs 3 shard(s)`,
    );
    expect(wrong.stdout).toBe("");
    // The CLI only compares: on a deployment that recorded nothing it records nothing.
    const fresh = await deployment();
    expect((await runAgentry(["approvals", "list", "--json"], fresh.env)).code).toBe(0);
    expect(await fresh.client.exists(shardCountKey(fresh.prefix))).toBe(0);
  });

  it("tails, verifies, anchors and exports every chain", async () => {
    const d = await deployment();
    const tail = await runAgentry(["audit", "tail", "-n", "20", "--json"], d.env);
    expect((JSON.parse(tail.stdout) as AuditEntry[]).map((e) => e.taskId).sort()).toEqual([
      "task_0_0",
      "task_1_0",
      "task_1_1",
      "task_2_0",
      "task_2_1",
      "task_2_2",
      "task_3_0",
      "task_3_1",
      "task_3_2",
      "task_3_3",
    ]);
    const verify = await runAgentry(["audit", "verify"], d.env);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toBe("audit chain intact: 10 entries, authenticated\n");

    const anchors = join(dir.path, `anchors-${d.prefix}.jsonl`);
    const anchor = await runAgentry(["audit", "anchor", "--out", anchors], d.env);
    expect(anchor.code).toBe(0);
    expect(anchor.stdout).toMatch(/^anchored 4 chains \(.*:audit seq 1, .*:audit seq 4\)/);
    expect(readFileSync(anchors, "utf8").trim().split("\n")).toHaveLength(1);
    const checked = await runAgentry(["audit", "verify", "--anchors", anchors, "--json"], d.env);
    expect(checked.code).toBe(0);
    expect(JSON.parse(checked.stdout)).toMatchObject({
      ok: true,
      count: 10,
      anchors: 4,
      chains: 4,
      unanchored: [],
    });

    // Shard 2's chain rolled back by one entry (head too): the shared line catches it, naming the chain.
    const chain = d.chains[3] as AuditLog;
    await rollBackLastEntry(d.client, chain);
    const broken = await runAgentry(["audit", "verify", "--anchors", anchors], d.env);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(`audit chain ${chain.streamKey} broken`);

    const out = join(dir.path, `export-${d.prefix}.jsonl`);
    const exported = await runAgentry(["audit", "export", "--out", out], d.env);
    expect(exported.code).toBe(0);
    for (const file of [out, `${out}.shard0`, `${out}.shard1`, `${out}.shard2`])
      expect(existsSync(file)).toBe(true);
    expect(readFileSync(`${out}.shard1`, "utf8").trim().split("\n")).toHaveLength(3);
  });
});
