import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AuditLog, type AuditEntry } from "@agentry/governance";
import { useTestRedis } from "@agentry/testkit";
import { rollBackLastEntry } from "../testing/audit-tamper.js";
import { runAgentry, tempDir } from "../testing/run-agentry.js";

// The CLI of a deployment with AGENTRY_AUDIT_LANES=3 sees every lane of the audit chain: tail
// merges them, verify and anchor cover each, export writes one file per lane.
const redis = useTestRedis("admin-audit-lanes");
const dir = tempDir("audit-lanes");
afterAll(() => dir.remove());
const KEY = "cli-lanes-audit-key-0123456789abcdefghij";

async function deployment() {
  const prefix = redis.freshPrefix();
  const client = redis.client();
  const lanes = [0, 1, 2].map((lane) => new AuditLog({ redis: client, prefix, lane, key: KEY }));
  // Lane n holds n + 1 entries; lane 0 keeps the keys of a deployment without lanes.
  for (const [n, lane] of lanes.entries())
    for (let k = 0; k <= n; k++)
      await lane.append({
        type: "request",
        taskId: `task_${n}_${k}`,
        tenant: "acme",
        data: { prompt: `p${n}.${k}` },
      });
  const env = {
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_AUDIT_LANES: "3",
    AGENTRY_AUDIT_KEY: KEY,
  };
  return { prefix, client, lanes, env };
}

describe("agentry with AGENTRY_AUDIT_LANES=3", () => {
  it("tails, verifies, anchors and exports every lane", async () => {
    const d = await deployment();
    expect(d.lanes.map((l) => l.streamKey)).toEqual([
      `${d.prefix}:audit`,
      `${d.prefix}:audit:lane:1`,
      `${d.prefix}:audit:lane:2`,
    ]);
    const tail = await runAgentry(["audit", "tail", "-n", "20", "--json"], d.env);
    expect((JSON.parse(tail.stdout) as AuditEntry[]).map((e) => e.taskId).sort()).toEqual([
      "task_0_0",
      "task_1_0",
      "task_1_1",
      "task_2_0",
      "task_2_1",
      "task_2_2",
    ]);
    const one = await runAgentry(["audit", "tail", "--task", "task_2_1", "--json"], d.env);
    expect((JSON.parse(one.stdout) as AuditEntry[]).map((e) => e.taskId)).toEqual(["task_2_1"]);
    const verify = await runAgentry(["audit", "verify"], d.env);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toBe("audit chain intact: 6 entries, authenticated\n");

    const anchors = join(dir.path, `anchors-${d.prefix}.jsonl`);
    const anchor = await runAgentry(["audit", "anchor", "--out", anchors], d.env);
    expect(anchor.code).toBe(0);
    expect(anchor.stdout).toMatch(
      /^anchored 3 chains \(.*:audit seq 1, .*:audit:lane:1 seq 2, .*:audit:lane:2 seq 3\)/,
    );
    const checked = await runAgentry(["audit", "verify", "--anchors", anchors, "--json"], d.env);
    expect(checked.code).toBe(0);
    expect(JSON.parse(checked.stdout)).toMatchObject({ ok: true, count: 6, chains: 3, unanchored: [] });

    const out = join(dir.path, `export-${d.prefix}.jsonl`);
    const exported = await runAgentry(["audit", "export", "--out", out], d.env);
    expect(exported.code).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(readFileSync(`${out}.lane2`, "utf8").trim().split("\n")).toHaveLength(3);
    const file = await runAgentry(["audit", "verify", "--file", `${out}.lane1`], d.env);
    expect(file.code).toBe(0);

    // Lane 1 cut back by one entry, head too: the anchor line catches it, naming the lane.
    const lane = d.lanes[1] as AuditLog;
    await rollBackLastEntry(d.client, lane);
    const broken = await runAgentry(["audit", "verify", "--anchors", anchors], d.env);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(`audit chain ${lane.streamKey} broken`);
    // Without anchors a cut lane is only a shorter chain; an entry forged past its head is not.
    const forged = d.lanes[2] as AuditLog;
    const [[, fields]] = (await d.client.xrevrange(forged.streamKey, "+", "-", "COUNT", 1)) as [
      string,
      string[],
    ][] as [[string, string[]]];
    const last = JSON.parse(fields[1] as string) as AuditEntry;
    await d.client.xadd(
      forged.streamKey,
      "4-0",
      "e",
      JSON.stringify({ ...last, seq: 4, taskId: "task_forged" }),
    );
    const tampered = await runAgentry(["audit", "verify"], d.env);
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toContain(`audit chain ${forged.streamKey} broken`);
  });

  it("archives every lane out of Redis into files that verify on their own; Redis keeps verifying from there", async () => {
    const d = await deployment();
    const anchors = join(dir.path, `archive-anchors-${d.prefix}.jsonl`);
    const out = join(dir.path, `archive-${d.prefix}.jsonl`);
    const archived = await runAgentry(["audit", "archive", "--out", out, "--anchors", anchors], d.env);
    expect(archived.code).toBe(0);
    expect(archived.stdout.trim().split("\n")).toEqual([
      `archived 1 entries of ${d.prefix}:audit (through seq 1) to ${out}; 1 trimmed from Redis`,
      `archived 2 entries of ${d.prefix}:audit:lane:1 (through seq 2) to ${out}.lane1; 2 trimmed from Redis`,
      `archived 3 entries of ${d.prefix}:audit:lane:2 (through seq 3) to ${out}.lane2; 3 trimmed from Redis`,
    ]);
    for (const lane of d.lanes) expect(await d.client.xlen(lane.streamKey)).toBe(0);
    for (const file of [out, `${out}.lane1`, `${out}.lane2`])
      expect((await runAgentry(["audit", "verify", "--file", file], d.env)).code).toBe(0);
    // New entries continue each lane; verify and a second archive carry on from the archived point.
    await (d.lanes[1] as AuditLog).append({
      type: "request",
      taskId: "task_later",
      tenant: "acme",
      data: {},
    });
    const checked = await runAgentry(["audit", "verify", "--anchors", anchors, "--json"], d.env);
    expect(checked.code).toBe(0);
    expect(JSON.parse(checked.stdout)).toMatchObject({ ok: true, count: 1, chains: 3 });
    const again = await runAgentry(["audit", "archive", "--out", out, "--anchors", anchors, "--json"], d.env);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      chains: [{ appended: 0 }, { appended: 1, lastSeq: 3 }, { appended: 0 }],
    });
    expect(readFileSync(`${out}.lane1`, "utf8").trim().split("\n")).toHaveLength(3);
    // Another file than the one a lane was archived to: refused with one line, nothing trimmed.
    const wrong = await runAgentry(
      ["audit", "archive", "--out", join(dir.path, "elsewhere.jsonl"), "--anchors", anchors],
      d.env,
    );
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(
      /^agentry: not archived: .* ends at seq 0 but .*:audit is archived through seq 1/,
    );
    // Without a key nothing can be anchored, so nothing is archived.
    const keyless = await runAgentry(["audit", "archive", "--out", out, "--anchors", anchors], {
      ...d.env,
      AGENTRY_AUDIT_KEY: "",
    });
    expect(keyless.code).toBe(1);
    expect(keyless.stderr).toContain("AGENTRY_AUDIT_KEY is not set");
  });

  it("refuses a lane count out of range with one line", async () => {
    const d = await deployment();
    const bad = await runAgentry(["audit", "verify"], { ...d.env, AGENTRY_AUDIT_LANES: "0" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("AGENTRY_AUDIT_LANES");
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
  });
});
