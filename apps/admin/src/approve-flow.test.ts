import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ToolRegistry, defineTool } from "@agentry/agent";
import { createLogger } from "@agentry/core";
import {
  ApprovalStore,
  AuditLog,
  DEFAULT_POLICY_FILE,
  SafetyValidator,
  createGovernanceHooks,
  loadApproversFile,
  loadPolicyFile,
  type AuditEntry,
} from "@agentry/governance";
import { createLanguageModel } from "@agentry/llm";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentWorker, createAgentTaskHandler } from "@agentry/runtime";
import { startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { runAgentry, tempDir } from "./testing/run-agentry.js";
import { referenceReply } from "@agentry/reference/testing";

const AUDIT_KEY = "approve-flow-test-audit-key-0123456789";

// The whole human-in-the-loop path through the CLI: a task that deletes a staging resource
// pauses for approval, `agentry approvals approve` signs the decision, the worker resumes it.
const redis = useTestRedis("admin-flow");
const logger = createLogger({ name: "admin-flow", level: "silent" });
const home = tempDir("flow");
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await (closers.pop() as () => Promise<void>)();
});
// The real Anthropic adapter and SDK against the fake Messages API, which answers by the reference tools' rule table (`referenceReply`).
let fake: FakeAnthropic;
beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: referenceReply });
});
afterAll(async () => {
  await fake.close();
  home.remove();
});

async function startGovernedWorker(prefix: string, approversFile: string) {
  const conn = redis.client();
  const deleted: unknown[] = [];
  const tools = new ToolRegistry().register(
    defineTool({
      name: "delete_resource",
      description: "Delete a resource (simulated)",
      input: z.object({ resource: z.string(), env: z.string() }),
      handler: (input) => {
        deleted.push(input);
        return { deleted: input.resource, env: input.env };
      },
    }),
  );
  const approverKeys = loadApproversFile(approversFile);
  // Workers and the CLI hold the same audit key, so the votes the CLI audits verify too.
  const audit = new AuditLog({ redis: conn, prefix, key: AUDIT_KEY });
  const approvals = new ApprovalStore({ redis: conn, prefix, approverKeys, audit });
  const governance = createGovernanceHooks({
    validator: new SafetyValidator({ policies: loadPolicyFile(decodeURIComponent(DEFAULT_POLICY_FILE)) }),
    approvals,
    audit,
    approverKeys,
  });
  const handler = createAgentTaskHandler({
    model: createLanguageModel({ llm: "anthropic", apiKey: "test-key", baseURL: fake.url }),
    tools,
    hooks: [governance],
    redis: conn,
    prefix,
    turns: new RedisSessionTurns({ redis: conn, prefix }),
    audit,
  });
  const started = new AgentWorker({
    url: redis.url,
    prefix,
    logger,
    handler,
    concurrency: 2,
    shutdownGraceMs: 1_000,
    wakeSources: [(wake) => approvals.subscribe((event) => wake(event.taskId))],
  });
  closers.push(() => started.close());
  await started.start();
  return { deleted, approvals };
}

describe("approving a paused task from the CLI", () => {
  it("submit --wait shows the approval, approve resumes the task, and the audit chain holds", async () => {
    const prefix = redis.freshPrefix();
    const approversFile = join(home.path, "approvers");
    writeFileSync(approversFile, "");
    const env = {
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: prefix,
      HOME: home.path,
      AGENTRY_APPROVERS_FILE: approversFile,
      AGENTRY_AUDIT_KEY: AUDIT_KEY,
    };
    appendFileSync(approversFile, (await runAgentry(["keys", "generate", "alice"], env)).stdout);
    const { deleted } = await startGovernedWorker(prefix, approversFile);

    let approvalId: string | undefined;
    let approve: Promise<Awaited<ReturnType<typeof runAgentry>>> | undefined;
    const waited = await runAgentry(
      ["submit", "Please delete db-7 in staging", "--wait", "--timeout", "60"],
      env,
      {
        onStderr: (chunk) => {
          const id = /awaiting approval (apr_\w+)/.exec(chunk)?.[1];
          if (id && !approve) {
            approvalId = id;
            approve = runAgentry(
              ["approvals", "approve", id, "--as", "alice", "--reason", "ticket OPS-7"],
              env,
            );
          }
        },
      },
    );
    if (!approve || !approvalId) throw new Error(`submit --wait never showed an approval:\n${waited.stderr}`);
    const approved = await approve;
    const taskId = /submitted task (task_\w+)/.exec(waited.stderr)?.[1];
    expect(approved).toEqual({
      code: 0,
      stdout: `${approvalId}: approved (1/1 approvals)\n`,
      stderr: `task ${taskId} will resume on a worker\n`,
    });

    expect(waited.code, `submit --wait:\n${waited.stderr}${waited.stdout}`).toBe(0);
    expect(waited.stderr).toContain(
      `: awaiting approval ${approvalId} — run \`agentry approvals approve ${approvalId} --as <approver>\``,
    );
    // The model was sent the tool's result and answered with it.
    expect(waited.stdout).toBe("Done: db-7 was deleted in staging.\n");
    expect(deleted).toEqual([{ resource: "db-7", env: "staging" }]);

    const tail = await runAgentry(["audit", "tail", "-n", "1000", "--json"], env);
    const entries = JSON.parse(tail.stdout) as AuditEntry[];
    const verify = await runAgentry(["audit", "verify"], env);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toBe(`audit chain intact: ${entries.length} entries, authenticated\n`);
    // The task's story in chain order (budget bookkeeping aside). The CLI audits alice's vote
    // after recording it, so the vote may land after the resumed task's approval_decided.
    expect(
      entries.filter((e) => e.type !== "budget" && e.type !== "approval_vote").map((e) => e.type),
    ).toEqual([
      "request",
      "decision",
      "policy_verdict",
      "approval_requested",
      "approval_decided",
      "action",
      "decision",
      "response",
    ]);
    expect(
      entries
        .filter((e) => e.type === "approval_vote")
        .map((e) => [e.actor, e.type === "approval_vote" ? e.data.approver : ""]),
    ).toEqual([["approver:alice", "alice"]]);
    expect(entries.every((e) => e.taskId === taskId)).toBe(true);
  });
});
