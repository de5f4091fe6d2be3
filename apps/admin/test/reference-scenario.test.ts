// The reference scenario end to end on real processes: the producer and two workers as
// `pnpm demo` starts them, the real @anthropic-ai/sdk against the fake Messages API, driven
// through the HTTP API and the `agentry` CLI. It checks what the demo only prints.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentryClient } from "@agentry/runtime";
import { loadApproversFile, verifyDecision, type AuditEntry } from "@agentry/governance";
import { startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import {
  FRUGAL_LIMIT_TOKENS,
  SCENARIO_APPROVER,
  approveAndFinish,
  askWeather,
  auditVerify,
  budgetRefusal,
  budgetShow,
  fanOut,
  parkStagingDelete,
  productionDelete,
  startReferenceSystem,
  type ReferenceSystem,
  type TaskView,
} from "../src/reference-scenario.js";
import { tempDir } from "../src/testing/run-agentry.js";
import { referenceReply } from "@agentry/reference/testing";

const redis = useTestRedis("reference-scenario");
const work = tempDir("scenario");
const logs = tempDir("scenario-logs");
let fake: FakeAnthropic;
let sys: ReferenceSystem;
let client: AgentryClient;
/** Every task tenant acme ran, by step, for the ledger checks at the end. */
const acmeTasks = new Map<string, string>();
let staging: { taskId: string; approvalId: string } | undefined;
let prodTaskId = "";

beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: referenceReply });
  const prefix = redis.freshPrefix();
  sys = await startReferenceSystem({
    redisUrl: redis.url,
    prefix,
    workDir: work.path,
    logDir: logs.path,
    env: {
      AGENTRY_LLM: "anthropic",
      ANTHROPIC_API_KEY: "test-key",
      ANTHROPIC_BASE_URL: fake.url,
      LOG_LEVEL: "info",
      OTEL_EXPORTER_OTLP_ENDPOINT: "",
    },
    // One slot in the whole queue: a task parked for approval that held it would block every other task.
    concurrency: 1,
    globalConcurrency: 1,
  });
  client = new AgentryClient({ url: redis.url, prefix });
}, 180_000);

afterAll(async () => {
  await client?.close();
  await sys?.stop();
  await fake?.close();
  work.remove();
  logs.remove();
}, 60_000);

const entriesOf = (taskId: string): Promise<AuditEntry[]> => sys.audit.read({ taskId, count: 1_000 });
const only = <T extends AuditEntry["type"]>(entries: AuditEntry[], type: T) =>
  entries.filter((e): e is Extract<AuditEntry, { type: T }> => e.type === type);
const completed = (s: TaskView) => expect(s, JSON.stringify(s)).toMatchObject({ state: "completed" });

// Each step may start an `agentry` CLI process; on a loaded machine that takes seconds (the bound is a guard).
describe("the reference scenario on a producer and two worker processes", { timeout: 120_000 }, () => {
  it("1. a weather question is answered with what the get_weather tool returned", async () => {
    const { taskId, status, answer } = await askWeather(sys);
    acmeTasks.set("weather", taskId);
    completed(status);
    const entries = await entriesOf(taskId);
    const actions = only(entries, "action");
    expect(actions.map((a) => [a.data.tool, a.data.input, a.data.outcome])).toEqual([
      ["get_weather", { city: "Paris" }, "ok"],
    ]);
    const output = String(actions[0]?.data.output);
    const weather = JSON.parse(output) as { city: string; temperatureC: number; conditions: string };
    expect(weather).toMatchObject({
      city: "Paris",
      temperatureC: expect.any(Number) as unknown,
      conditions: expect.any(String) as unknown,
    });
    // The model was sent the tool's result and answered with it.
    expect(answer).toBe(`In Paris it is ${weather.temperatureC}°C and ${weather.conditions}.`);
  });

  it("2. a fan-out of three tasks: every task completes, each exactly once", async () => {
    const cities = ["Tokyo", "Nairobi", "Lima"];
    const group = await fanOut(sys, cities);
    expect(group.tasks.map((t) => t.city)).toEqual(cities);
    for (const t of group.tasks) {
      acmeTasks.set(`fan-out ${t.city}`, t.taskId);
      completed(t.status);
      const entries = await entriesOf(t.taskId);
      expect(only(entries, "request")).toHaveLength(1);
      expect(only(entries, "response")).toHaveLength(1);
      expect(only(entries, "action").map((a) => [a.data.tool, a.data.input])).toEqual([
        ["get_weather", { city: t.city }],
      ]);
      expect(t.status.result?.text).toMatch(new RegExp(`^In ${t.city} it is -?\\d+°C and [a-z ]+\\.$`));
    }
    await expect
      .poll(async () => (await sys.get(`/v1/task-groups/${group.groupId}`)).body, { timeout: 30_000 })
      .toMatchObject({
        state: "completed",
        result: { children: cities.map(() => ({ status: "completed" })) },
      });
  });

  it("3. a staging delete parks for approval holding no worker slot: another task runs meanwhile", async () => {
    staging = await parkStagingDelete(sys);
    const { taskId, approvalId } = staging;
    expect(await client.queue.getJobState(taskId)).toBe("delayed");
    expect((await client.queue.getJob(taskId))?.data.parked).toMatchObject({
      reason: "approval",
      approvalIds: [approvalId],
    });
    expect(await client.queue.getActiveCount()).toBe(0);
    expect(await sys.approvals.get(approvalId)).toMatchObject({
      status: "pending",
      taskId,
      approvers: [SCENARIO_APPROVER],
      quorum: 1,
    });

    // The queue has one slot in all: this task can only run because the parked one holds none.
    const other = await sys.post("/v1/tasks", { prompt: "What's the weather in Oslo?", userId: "user-456" });
    const otherId = String(other.body.taskId);
    acmeTasks.set("while parked", otherId);
    completed(await sys.waitTask(otherId));
    expect((await client.status(taskId)).state).toBe("awaiting_approval");
    expect(await sys.deletions()).toEqual([]);
  });

  it("4. the approver approves with agentry approvals approve; the signed decision resumes the task and db-7 is deleted once", async () => {
    const { taskId, approvalId } = staging as { taskId: string; approvalId: string };
    acmeTasks.set("staging delete", taskId);
    const { cli, status, answer } = await approveAndFinish(sys, taskId, approvalId);
    expect(cli.stdout).toBe(`${approvalId}: approved (1/1 approvals)\n`);
    completed(status);
    expect(answer).toContain("db-7");
    expect((await sys.deletions()).map((d) => [d.taskId, d.resource, d.env])).toEqual([
      [taskId, "db-7", "staging"],
    ]);

    const record = await sys.approvals.get(approvalId);
    expect(record).toMatchObject({
      status: "approved",
      decisions: [
        { approver: SCENARIO_APPROVER, outcome: "approve", reason: "demo: staging cleanup is fine" },
      ],
    });
    const [decision] = record?.decisions ?? [];
    expect(
      verifyDecision(loadApproversFile(sys.env.AGENTRY_APPROVERS_FILE as string), {
        ...(decision as NonNullable<typeof decision>),
        approvalId,
      }),
    ).toBe(true);
  });

  it("5. a production delete is denied by no-prod-delete and never runs", async () => {
    const { taskId, status, answer } = await productionDelete(sys);
    prodTaskId = taskId;
    acmeTasks.set("production delete", taskId);
    completed(status);
    expect(answer).toContain("Denied by policy no-prod-delete");
    expect((await sys.deletions()).filter((d) => d.taskId === taskId)).toEqual([]);
    const entries = await entriesOf(taskId);
    expect(
      only(entries, "policy_verdict").map((e) => [e.data.tool, e.data.verdict.type, e.data.decidedBy]),
    ).toEqual([["delete_resource", "deny", "no-prod-delete"]]);
    expect(only(entries, "action").map((e) => [e.data.tool, e.data.outcome])).toEqual([
      ["delete_resource", "denied"],
    ]);
    expect(only(entries, "approval_requested")).toEqual([]);
  });

  it("6. a task over tenant frugal's budget fails with BUDGET_EXCEEDED before any model call; the ledger never passes the limit", async () => {
    const requestsBefore = fake.requests.length;
    const { status } = await budgetRefusal(sys);
    expect(status).toMatchObject({ state: "failed", error: { code: "BUDGET_EXCEEDED" } });
    const stats = await sys.ledger.getStats("tenant:frugal");
    expect(stats.limit).toMatchObject({ maxTokens: FRUGAL_LIMIT_TOKENS, period: "day" });
    expect(stats.used).toEqual({ tokens: 0, costMicroUsd: 0 });
    expect(stats.reserved).toEqual({ tokens: 0, costMicroUsd: 0 });
    // The prompt may be counted (free), never sent as a message.
    expect(
      fake.requests
        .slice(requestsBefore)
        .filter((r) => r.path === "/v1/messages" && JSON.stringify(r.body).includes("essay about Redis")),
    ).toEqual([]);
  });

  it("7. agentry budget show matches the ledger, and the ledger holds exactly what the provider billed", async () => {
    const { stats } = await budgetShow(sys);
    const scopes = await sys.ledger.listScopes();
    expect(stats.map((s) => s.scope).sort()).toEqual([...scopes].sort());
    for (const s of stats) expect(s).toEqual(await sys.ledger.getStats(s.scope));
    for (const s of stats) expect(s.reserved, s.scope).toEqual({ tokens: 0, costMicroUsd: 0 });

    const billed = fake.billed();
    const global = stats.find((s) => s.scope === "global");
    const acme = stats.find((s) => s.scope === "tenant:acme");
    expect(global?.used.tokens).toBe(billed.tokens);
    expect(acme?.used.tokens).toBe(billed.tokens);
    // Each task's result reports its own cost; together they are the tenant's spend.
    let cost = 0;
    for (const taskId of acmeTasks.values())
      cost += (await client.status(taskId)).result?.costMicroUsd ?? Number.NaN;
    expect(acme?.used.costMicroUsd).toBe(cost);
    expect(global?.used.costMicroUsd).toBe(cost);
  });

  it("8. agentry audit verify exits 0, and each task's chain holds its request, verdicts, decisions, actions and response in order", async () => {
    const verified = await auditVerify(sys);
    expect(verified.stderr).toBe("");
    expect(verified.code).toBe(0);
    const all = await sys.audit.read({ count: 10_000 });
    expect(verified.stdout).toBe(`audit chain intact: ${all.length} entries, authenticated\n`);

    const flow = (entries: AuditEntry[]) =>
      entries
        .filter((e) => e.type !== "budget")
        .map((e) =>
          e.type === "action"
            ? `action:${e.data.tool}:${e.data.outcome}`
            : e.type === "policy_verdict"
              ? `verdict:${e.data.verdict.type}`
              : e.type,
        );
    const { taskId, approvalId } = staging as { taskId: string; approvalId: string };
    const stagingEntries = await entriesOf(taskId);
    // The approver's vote is audited by the CLI after its decision is recorded, so it may land
    // after the resumed task's approval_decided; it always follows the request for approval.
    expect(flow(stagingEntries.filter((e) => e.type !== "approval_vote"))).toEqual([
      "request",
      "decision",
      "verdict:require_approval",
      "approval_requested",
      "approval_decided",
      "action:delete_resource:ok",
      "decision",
      "response",
    ]);
    const votes = only(stagingEntries, "approval_vote");
    expect(votes.map((v) => [v.actor, v.data.approvalId, v.data.outcome])).toEqual([
      [`approver:${SCENARIO_APPROVER}`, approvalId, "approve"],
    ]);
    expect(votes[0]?.seq).toBeGreaterThan(
      only(stagingEntries, "approval_requested")[0]?.seq ?? Number.POSITIVE_INFINITY,
    );
    expect(flow(await entriesOf(prodTaskId))).toEqual([
      "request",
      "decision",
      "verdict:deny",
      "action:delete_resource:denied",
      "decision",
      "response",
    ]);
    expect(flow(await entriesOf(acmeTasks.get("weather") as string))).toEqual([
      "request",
      "decision",
      "verdict:allow",
      "action:get_weather:ok",
      "decision",
      "response",
    ]);
  });
});
