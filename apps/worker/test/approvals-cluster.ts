import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { Redis } from "ioredis";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient, type TaskStatus } from "@agentry/runtime";
import { ApprovalStore, AuditLog, type AuditEntry } from "@agentry/governance";
import { createTestApprovers, type TestApprovers } from "@agentry/governance/testing";
import { startFakeAnthropic, type FakeAnthropic, type TestRedis } from "@agentry/testkit";
import { deletionsKey } from "@agentry/reference";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";
import { referenceReply } from "@agentry/reference/testing";

/** A deletion recorded by the reference `delete_resource` tool. */
export interface Deletion {
  resource: string;
  env: string;
  taskId: string;
  toolUseId: string;
  at: string;
}

/** Worker processes sharing one prefix, a fake Anthropic API in demo mode, enrolled approvers and a policy. */
export interface ApprovalCluster {
  prefix: string;
  env: Record<string, string>;
  fake: FakeAnthropic;
  approvers: TestApprovers;
  workers: WorkerProcess[];
  client: AgentryClient;
  conn: Redis;
  /** A store holding the approvers' keys (it refuses decisions that do not verify) and auditing, as the CLI's. */
  store: ApprovalStore;
  audit: AuditLog;
  /** Starts one more worker process on the same prefix and waits until it runs. */
  startWorker(name: string): Promise<WorkerProcess>;
  /** Submits a prompt as a task of its own session. */
  submit(prompt: string): Promise<string>;
  /** Waits until the task is parked awaiting approval; returns its status. */
  awaitingApproval(taskId: string): Promise<TaskStatus & { approvalIds: string[] }>;
  deletions(): Promise<Deletion[]>;
  /** Audit entries of one task, in chain order. */
  auditOf(taskId: string): Promise<AuditEntry[]>;
  close(): Promise<void>;
}

/** Writes a policy file into a fresh temporary directory and returns its path. */
export function writePolicyFile(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "agentry-approvals-")), "policy.yaml");
  writeFileSync(path, text);
  return path;
}

/** Starts `workers` worker processes (concurrency 1 each unless told) against `redis`. */
export async function startApprovalCluster(
  redis: TestRedis,
  options: { policy?: string; workers?: number; approvers?: string[]; concurrency?: number },
): Promise<ApprovalCluster> {
  const fake = await startFakeAnthropic({ handler: referenceReply });
  const approvers = createTestApprovers(options.approvers ?? ["alice", "bob", "carol"]);
  const dir = mkdtempSync(join(tmpdir(), "agentry-approvers-"));
  const approversFile = join(dir, "approvers");
  writeFileSync(approversFile, approvers.fileText);
  const prefix = redis.freshPrefix();
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_APPROVERS_FILE: approversFile,
    AGENTRY_CONCURRENCY: String(options.concurrency ?? 1),
    AGENTRY_LOCK_DURATION_MS: "5000",
    AGENTRY_STALLED_INTERVAL_MS: "2000",
    AGENTRY_SHUTDOWN_GRACE_MS: "2000",
    ...(options.policy ? { AGENTRY_POLICY_FILE: options.policy } : {}),
  };
  const workers: WorkerProcess[] = [];
  const startWorker = async (name: string) => {
    const w = startWorkerProcess(name, env);
    workers.push(w);
    await waitStarted(w);
    return w;
  };
  await Promise.all(Array.from({ length: options.workers ?? 2 }, (_, i) => startWorker(`w${i + 1}`)));
  const conn = redis.client();
  const client = new AgentryClient({
    url: redis.url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis: conn, prefix }),
  });
  const audit = new AuditLog({ redis: conn, prefix });
  const store = new ApprovalStore({ redis: conn, prefix, approverKeys: approvers.keys, audit });
  let n = 0;
  return {
    prefix,
    env,
    fake,
    approvers,
    workers,
    client,
    conn,
    store,
    audit,
    startWorker,
    async submit(prompt) {
      n += 1;
      return (
        await client.submit({ prompt, userId: "ops", sessionId: `s-${n}-${Date.now()}` }, { tenant: "acme" })
      ).taskId;
    },
    async awaitingApproval(taskId) {
      let status: TaskStatus | undefined;
      await expect
        .poll(async () => (status = await client.status(taskId)).state, { timeout: 30_000, interval: 100 })
        .toBe("awaiting_approval");
      const s = status as TaskStatus;
      expect(s.approvalIds?.length).toBeGreaterThan(0);
      return s as TaskStatus & { approvalIds: string[] };
    },
    async deletions() {
      return (await conn.lrange(deletionsKey(prefix), 0, -1)).map((x) => JSON.parse(x) as Deletion);
    },
    async auditOf(taskId) {
      return audit.read({ taskId, count: 1_000 });
    },
    async close() {
      await Promise.all(workers.splice(0).map((w) => w.kill()));
      await client.close();
      await fake.close();
    },
  };
}

/** The audit entry types of a task, in order. */
export function typesOf(entries: AuditEntry[]): string[] {
  return entries.map((e) => e.type);
}

/** The tool_results the model was sent for one tool_use id (as the fake Anthropic API received them). */
export function toolResultsSent(
  fake: FakeAnthropic,
  toolUseId: string,
): { text: string; isError: boolean }[] {
  const seen = new Map<string, { text: string; isError: boolean }>();
  for (const req of fake.requests) {
    for (const m of req.body.messages ?? []) {
      if (m.role !== "user" || typeof m.content === "string") continue;
      for (const b of m.content) {
        if (b.type !== "tool_result" || b.tool_use_id !== toolUseId) continue;
        const text =
          typeof b.content === "string" ? b.content : (b.content ?? []).map((x) => x.text ?? "").join("\n");
        seen.set(`${text}|${b.is_error === true}`, { text, isError: b.is_error === true });
      }
    }
  }
  return [...seen.values()];
}
