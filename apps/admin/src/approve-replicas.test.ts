import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { ApprovalStore } from "@agentry/governance";
import { testApprovalRequest } from "@agentry/governance/testing";
import { useRedisReplicated } from "@agentry/testkit";
import { runAgentry, tempDir } from "./testing/run-agentry.js";

// With AGENTRY_REDIS_WAIT_REPLICAS, `agentry approvals approve` reports success only once a
// replica holds the decision, and says plainly when none acknowledged it in time.
const servers = useRedisReplicated();
let onMaster: Redis;
const home = tempDir("approve-replicas");

beforeAll(() => {
  onMaster = servers.connect(servers.master);
});

afterAll(() => {
  home.remove();
});

describe("agentry approvals approve with AGENTRY_REDIS_WAIT_REPLICAS", () => {
  it("approves once the replica holds the decision; with the replica stalled it fails retryable and the decision stands", async () => {
    const prefix = "{arp}";
    const approversFile = join(home.path, "approvers");
    writeFileSync(approversFile, "");
    const env = {
      REDIS_URL: servers.master.url,
      AGENTRY_PREFIX: prefix,
      HOME: home.path,
      AGENTRY_APPROVERS_FILE: approversFile,
      AGENTRY_REDIS_WAIT_REPLICAS: "1",
      AGENTRY_REDIS_WAIT_TIMEOUT_MS: "300",
    };
    appendFileSync(approversFile, (await runAgentry(["keys", "generate", "alice"], env)).stdout);
    const store = new ApprovalStore({ redis: onMaster, prefix });
    const ask = async (taskId: string) =>
      (await store.request(testApprovalRequest(taskId, { approvers: ["alice"] }))).record.id;

    const first = await ask("task-1");
    const ok = await runAgentry(["approvals", "approve", first, "--as", "alice"], env);
    expect(ok).toMatchObject({ code: 0, stdout: `${first}: approved (1/1 approvals)\n` });

    const second = await ask("task-2");
    servers.replica.process.kill("SIGSTOP");
    let stalled: Awaited<ReturnType<typeof runAgentry>>;
    try {
      stalled = await runAgentry(["approvals", "approve", second, "--as", "alice"], env);
    } finally {
      servers.replica.process.kill("SIGCONT");
    }
    expect(stalled.code).not.toBe(0);
    expect(stalled.stdout).toBe("");
    expect(stalled.stderr).toContain(
      `The approve of alice on ${second} is recorded, but 0 of 1 Redis replica(s) acknowledged it within 300 ms`,
    );
    expect((await store.get(second))?.status).toBe("approved");
  });

  it("submit names the task a stalled replica did not acknowledge, not an unreachable Redis", async () => {
    const env = {
      REDIS_URL: servers.master.url,
      AGENTRY_PREFIX: "{srp}",
      HOME: home.path,
      AGENTRY_REDIS_WAIT_REPLICAS: "1",
      AGENTRY_REDIS_WAIT_TIMEOUT_MS: "300",
    };
    servers.replica.process.kill("SIGSTOP");
    let stalled: Awaited<ReturnType<typeof runAgentry>>;
    try {
      stalled = await runAgentry(["submit", "hello", "--idempotency-key", "k1"], env);
    } finally {
      servers.replica.process.kill("SIGCONT");
    }
    expect(stalled.code).not.toBe(0);
    const taskId = /Task (\S+) is enqueued, but 0 of 1 Redis replica\(s\) acknowledged it within 300 ms/.exec(
      stalled.stderr,
    )?.[1];
    expect(taskId, stalled.stderr).toBeDefined();
    // Submitted again with the same key once the replica is back: the same task.
    const again = await runAgentry(["submit", "hello", "--idempotency-key", "k1", "--json"], env);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ taskId, deduplicated: true });
  });
});
