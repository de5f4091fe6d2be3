import { appendFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApprovalStore,
  AuditLog,
  loadApproversFile,
  verifyDecision,
  type ApprovalRequest,
} from "@agentry/governance";
import { useTestRedis } from "@agentry/testkit";
import { runAgentry, tempDir } from "../testing/run-agentry.js";

const redis = useTestRedis("admin-approvals");
const home = tempDir("home");
const approversFile = join(home.path, "approvers");
let env: NodeJS.ProcessEnv;
let store: ApprovalStore;
let seq = 0;

const action = {
  tool: "delete_resource",
  input: { resource: "db-7", env: "staging" },
  taskId: "",
  tenant: "acme",
  userId: "u1",
  sessionId: "s1",
};

/** A pending approval written the way a worker writes it. */
async function pendingApproval(overrides: Partial<ApprovalRequest> = {}) {
  seq += 1;
  const taskId = `task_cli_${seq}`;
  const { record } = await store.request({
    taskId,
    toolUseId: `toolu_${seq}`,
    action: { ...action, taskId },
    approvers: ["alice", "bob"],
    quorum: 1,
    ttlMs: 600_000,
    reason: "Deleting a resource needs a human approval",
    ...overrides,
  });
  return record;
}

function expectOneLine(stderr: string, pattern: RegExp) {
  const lines = stderr.trimEnd().split("\n");
  expect(lines.at(-1)).toMatch(/^agentry: /);
  expect(lines.at(-1)).toMatch(pattern);
  expect(lines.filter((l) => l.startsWith("agentry: "))).toHaveLength(1);
}

beforeAll(async () => {
  env = {
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: redis.freshPrefix(),
    HOME: home.path,
    AGENTRY_APPROVERS_FILE: approversFile,
  };
  writeFileSync(approversFile, "# enrolled approvers\n");
  // Enrol alice, bob and carol the documented way: `agentry keys generate <name> >> approvers`.
  for (const name of ["alice", "bob", "carol"]) {
    const run = await runAgentry(["keys", "generate", name], env);
    expect(run.code).toBe(0);
    appendFileSync(approversFile, run.stdout);
  }
  store = new ApprovalStore({ redis: redis.client(), prefix: env.AGENTRY_PREFIX });
});
afterAll(() => home.remove());

describe("agentry keys generate", () => {
  it("writes an owner-only private key and prints exactly the approvers-file line", async () => {
    const run = await runAgentry(["keys", "generate", "dave"], env);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^dave: [A-Za-z0-9+/]{43}=\n$/);
    const keyFile = join(home.path, ".agentry", "keys", "dave.key");
    expect(readFileSync(keyFile, "utf8")).toContain("BEGIN PRIVATE KEY");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(home.path, ".agentry", "keys")).mode & 0o777).toBe(0o700);
    expect(statSync(join(home.path, ".agentry")).mode & 0o777).toBe(0o700);
    expect(loadApproversFile(approversFile).has("alice")).toBe(true);
  });

  it("refuses to overwrite a key without --force, and replaces it with --force", async () => {
    const keyFile = join(home.path, ".agentry", "keys", "alice.key");
    const before = readFileSync(keyFile, "utf8");
    const refused = await runAgentry(["keys", "generate", "alice"], env);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expectOneLine(refused.stderr, /already exists.*--force/);
    expect(readFileSync(keyFile, "utf8")).toBe(before);

    const out = join(home.path, "elsewhere", "erin.key");
    const first = await runAgentry(["keys", "generate", "erin", "--out", out, "--json"], env);
    expect(first.code).toBe(0);
    const json = JSON.parse(first.stdout) as {
      approver: string;
      publicKey: string;
      keyFile: string;
      line: string;
    };
    expect(json).toMatchObject({ approver: "erin", keyFile: out, line: `erin: ${json.publicKey}` });
    const forced = await runAgentry(["keys", "generate", "erin", "--out", out, "--force"], env);
    expect(forced.code).toBe(0);
    expect(forced.stdout).not.toContain(json.publicKey);
  });

  it("rejects approver names the approvers file cannot hold", async () => {
    const run = await runAgentry(["keys", "generate", "bad name:"], env);
    expect(run.code).toBe(2);
    expectOneLine(run.stderr, /approver names/);
  });
});

describe("agentry approvals", () => {
  it("lists pending approvals and approves one with a signature that verifies", async () => {
    const record = await pendingApproval();
    const list = await runAgentry(["approvals", "list", "--json"], env);
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { id: string }[]).map((r) => r.id)).toContain(record.id);
    const table = await runAgentry(["approvals", "list"], env);
    expect(table.stdout).toMatch(/^ID\s+STATUS\s+TASK\s+TOOL\s+INPUT\s+APPROVERS\s+DECISIONS\s+EXPIRES IN\n/);
    expect(table.stdout).toContain(record.id);
    expect(table.stdout).toContain("delete_resource");

    const run = await runAgentry(
      ["approvals", "approve", record.id, "--as", "alice", "--reason", "checked the ticket"],
      env,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${record.id}: approved (1/1 approvals)\n`);

    const after = await store.require(record.id);
    expect(after.status).toBe("approved");
    expect(after.decisions).toHaveLength(1);
    const decision = after.decisions[0];
    expect(decision).toMatchObject({ approver: "alice", outcome: "approve", reason: "checked the ticket" });
    expect(verifyDecision(loadApproversFile(approversFile), { ...decision!, approvalId: record.id })).toBe(
      true,
    );
    // The signature is bound to this approval: it does not verify on another one.
    expect(verifyDecision(loadApproversFile(approversFile), { ...decision!, approvalId: "apr_other" })).toBe(
      false,
    );

    const again = await runAgentry(["approvals", "approve", record.id, "--as", "bob"], env);
    expect(again.code).toBe(1);
    expectOneLine(again.stderr, new RegExp(`approval ${record.id} is already approved`));
  });

  it("counts toward a quorum and reports the approval still pending", async () => {
    const record = await pendingApproval({ quorum: 2 });
    const first = await runAgentry(["approvals", "approve", record.id, "--as", "alice", "--json"], env);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({
      approvalId: record.id,
      result: "recorded",
      status: "pending",
      approvals: 1,
      quorum: 2,
    });
    const twice = await runAgentry(["approvals", "approve", record.id, "--as", "alice"], env);
    expect(twice.code).toBe(1);
    expectOneLine(twice.stderr, /alice has already decided/);
    const second = await runAgentry(["approvals", "approve", record.id, "--as", "bob", "--json"], env);
    expect(JSON.parse(second.stdout)).toMatchObject({ result: "decided", status: "approved", approvals: 2 });
  });

  it("rejects only with a reason", async () => {
    const record = await pendingApproval();
    const missing = await runAgentry(["approvals", "reject", record.id, "--as", "bob"], env);
    expect(missing.code).toBe(2);
    expectOneLine(missing.stderr, /--reason/);
    expect((await store.require(record.id)).status).toBe("pending");

    const run = await runAgentry(
      ["approvals", "reject", record.id, "--as", "bob", "--reason", "wrong database"],
      env,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${record.id}: rejected by bob: wrong database\n`);
    const after = await store.require(record.id);
    expect(after.status).toBe("rejected");
    expect(after.decisions[0]).toMatchObject({
      approver: "bob",
      outcome: "reject",
      reason: "wrong database",
    });
  });

  it("refuses someone who is not an approver of this approval", async () => {
    const record = await pendingApproval({ approvers: ["alice"] });
    const run = await runAgentry(["approvals", "approve", record.id, "--as", "carol"], env);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expectOneLine(run.stderr, /carol is not an approver of .* \(approvers: alice\)/);
    expect((await store.require(record.id)).status).toBe("pending");
  });

  it("refuses someone who is not enrolled in the approvers file", async () => {
    const record = await pendingApproval({ approvers: ["*"] });
    await runAgentry(["keys", "generate", "mallory"], env); // a key, but never enrolled
    const run = await runAgentry(["approvals", "approve", record.id, "--as", "mallory"], env);
    expect(run.code).toBe(1);
    expectOneLine(run.stderr, /mallory is not an enrolled approver/);
    expect((await store.require(record.id)).status).toBe("pending");
  });

  it("refuses a decision signed with the wrong key, records nothing and audits the refusal", async () => {
    const record = await pendingApproval();
    const bobsKey = join(home.path, ".agentry", "keys", "bob.key");
    const run = await runAgentry(["approvals", "approve", record.id, "--as", "alice", "--key", bobsKey], env);
    expect(run.code).toBe(1);
    expectOneLine(run.stderr, /signature refused/);
    const after = await store.require(record.id);
    expect(after.status).toBe("pending");
    expect(after.decisions).toEqual([]);
    const audit = new AuditLog({ redis: redis.client(), prefix: env.AGENTRY_PREFIX });
    const entries = await audit.tail(1);
    expect(entries[0]).toMatchObject({
      type: "approval_refused",
      actor: "approver:alice",
      data: { approvalId: record.id, approver: "alice" },
    });
  });

  it("names a missing or unreadable key file", async () => {
    const record = await pendingApproval();
    const missing = await runAgentry(
      ["approvals", "approve", record.id, "--as", "alice", "--key", join(home.path, "nope.key")],
      env,
    );
    expect(missing.code).toBe(1);
    expectOneLine(missing.stderr, /no private key for alice at .*nope\.key/);

    const garbage = join(home.path, "garbage.key");
    writeFileSync(garbage, "not a key\n");
    const bad = await runAgentry(["approvals", "approve", record.id, "--as", "alice", "--key", garbage], env);
    expect(bad.code).toBe(1);
    expectOneLine(bad.stderr, /bad key file .*garbage\.key/);
    expect((await store.require(record.id)).status).toBe("pending");
  });

  it("refuses unknown and expired approvals", async () => {
    const unknown = await runAgentry(["approvals", "approve", "apr_does_not_exist", "--as", "alice"], env);
    expect(unknown.code).toBe(1);
    expectOneLine(unknown.stderr, /unknown approval apr_does_not_exist/);

    const record = await pendingApproval({ ttlMs: 1 });
    await expect.poll(() => Date.now() > record.expiresAt).toBe(true);
    const run = await runAgentry(["approvals", "approve", record.id, "--as", "alice"], env);
    expect(run.code).toBe(1);
    expectOneLine(run.stderr, /expired/);
    expect((await store.require(record.id)).decisions).toEqual([]);
  });

  it("names a broken approvers file when deciding, while listing still works", async () => {
    const record = await pendingApproval();
    const broken = join(home.path, "broken-approvers");
    writeFileSync(broken, "alice: not-a-key\n");
    const brokenEnv = { ...env, AGENTRY_APPROVERS_FILE: broken };
    const run = await runAgentry(["approvals", "approve", record.id, "--as", "alice"], brokenEnv);
    expect(run.code).toBe(1);
    expectOneLine(run.stderr, /broken-approvers:1: approver "alice": not an Ed25519 public key/);
    expect((await store.require(record.id)).status).toBe("pending");
    expect((await runAgentry(["approvals", "list"], brokenEnv)).code).toBe(0);
  });

  it("shows one approval and lists by status", async () => {
    const record = await pendingApproval();
    await runAgentry(["approvals", "reject", record.id, "--as", "alice", "--reason", "no"], env);
    const show = await runAgentry(["approvals", "show", record.id], env);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/status\s+rejected/);
    expect(show.stdout).toMatch(/decision 1\s+reject by alice/);
    const rejected = await runAgentry(["approvals", "list", "--status", "rejected", "--json"], env);
    expect((JSON.parse(rejected.stdout) as { id: string }[]).map((r) => r.id)).toContain(record.id);
    const pending = await runAgentry(["approvals", "list", "--json"], env);
    expect((JSON.parse(pending.stdout) as { id: string }[]).map((r) => r.id)).not.toContain(record.id);
    const bad = await runAgentry(["approvals", "list", "--status", "maybe"], env);
    expect(bad.code).toBe(2);
  });
});
