import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { ApprovalStore } from "@agentry/governance";
import { createTestApprovers, type TestApprovers } from "@agentry/governance/testing";
import { BudgetLedger, type TaskStatus } from "@agentry/runtime";
import { startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { startProducerProcess, writeTempFile, type ProducerProcess } from "./faults/harness.js";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";
import { referenceReply } from "@agentry/reference/testing";

// Two tenants, alpha and beta, each with its own API key, use the same session id, user id,
// idempotency key and memory through the producer HTTP API (its own process), served by a real
// worker process with the reference policy (a staging delete needs one approval) against the fake
// Messages API, which records every request the model would have seen.

const redis = useTestRedis("tenancy");
const prefix = redis.freshPrefix();
const ALPHA = "key-alpha";
const BETA = "key-beta";

let fake: FakeAnthropic;
let producer: ProducerProcess;
let worker: WorkerProcess;
let approvers: TestApprovers;
let conn: Redis;
let ledger: BudgetLedger;

beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: referenceReply });
  approvers = createTestApprovers(["alice"]);
  const keys = writeTempFile("api-keys", `${ALPHA}=alpha\n${BETA}=beta\n`);
  const env = {
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_APPROVERS_FILE: writeTempFile("approvers", approvers.fileText),
    AGENTRY_CONCURRENCY: "4",
  };
  [producer, worker] = await Promise.all([
    startProducerProcess({
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: prefix,
      AGENTRY_API_KEYS_FILE: keys,
      LOG_LEVEL: "warn",
    }),
    (async () => {
      const w = startWorkerProcess("tenancy", env);
      await waitStarted(w, 60_000);
      return w;
    })(),
  ]);
  conn = redis.client();
  ledger = new BudgetLedger({ redis: conn, prefix });
}, 120_000);

afterAll(async () => {
  await worker?.kill();
  await producer?.kill();
  await fake?.close();
});

interface Reply<T = Record<string, unknown>> {
  status: number;
  body: T;
}

async function api<T = Record<string, unknown>>(
  key: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply<T>> {
  const res = await fetch(`${producer.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function submit(
  key: string,
  task: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<string> {
  const res = await api<{ taskId: string }>(key, "POST", "/v1/tasks", task, headers);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.taskId;
}

async function status(key: string, taskId: string): Promise<TaskStatus> {
  const res = await api<TaskStatus>(key, "GET", `/v1/tasks/${taskId}`);
  expect(res.status).toBe(200);
  return res.body;
}

async function until(key: string, taskId: string, states: TaskStatus["state"][]): Promise<TaskStatus> {
  let last: TaskStatus | undefined;
  await expect
    .poll(async () => (last = await status(key, taskId)).state, { timeout: 45_000, interval: 100 })
    .toSatisfy((s: TaskStatus["state"]) => states.includes(s));
  return last as TaskStatus;
}

const finished = (key: string, taskId: string) => until(key, taskId, ["completed", "failed"]);

/** Keys under the suite's prefix in the tenant-owned families (decoded), without the prefix. */
async function ownedKeys(): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await conn.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== "0");
  return keys
    .map((k) => decodeURIComponent(k.slice(prefix.length + 1)))
    .filter((k) => /^(session|turns|tool-journal|once|memory:ids):/.test(k));
}

const NAMES_ITS_TENANT = /:tenant:(alpha|beta):(session|task|user):/;

/** Everything the model was sent (system prompt, messages, tool results) by requests that contain `marker`. */
function seenWith(marker: string): string[] {
  return fake.requests
    .filter((r) => r.path === "/v1/messages")
    .map((r) => JSON.stringify({ system: r.body.system ?? null, messages: r.body.messages ?? [] }))
    .filter((text) => text.includes(marker));
}

describe("tenant isolation through the HTTP API", { timeout: 90_000 }, () => {
  it("history: the same sessionId in another tenant sees nothing of the first tenant's session and adds nothing to it", async () => {
    const a1 = await submit(ALPHA, {
      prompt: "Alpha speaking: my password is tangerine-42",
      sessionId: "shared",
      userId: "same-user",
    });
    expect((await finished(ALPHA, a1)).state).toBe("completed");
    const b1 = await submit(BETA, {
      prompt: "Beta speaking: hello there",
      sessionId: "shared",
      userId: "same-user",
    });
    expect((await finished(BETA, b1)).state).toBe("completed");
    const a2 = await submit(ALPHA, {
      prompt: "Alpha speaking again",
      sessionId: "shared",
      userId: "same-user",
    });
    expect((await finished(ALPHA, a2)).state).toBe("completed");

    // Beta's model calls never carried alpha's secret ...
    expect(seenWith("Beta speaking: hello there").length).toBeGreaterThan(0);
    for (const seen of seenWith("Beta speaking: hello there")) expect(seen).not.toContain("tangerine-42");
    // ... and beta's turn was not appended to alpha's session, which still holds alpha's own history.
    const alphaSecond = seenWith("Alpha speaking again");
    expect(alphaSecond.length).toBeGreaterThan(0);
    for (const seen of alphaSecond) {
      expect(seen).toContain("tangerine-42");
      expect(seen).not.toContain("Beta speaking");
    }
    expect((await status(BETA, b1)).sessionId).toBe("shared");
  });

  it("turns: a task of one tenant holding a session's turn (waiting for approval) does not block the same sessionId in another tenant", async () => {
    const held = await submit(ALPHA, { prompt: "Please delete db-7 in staging", sessionId: "turn-session" });
    const [approvalId] = (await until(ALPHA, held, ["awaiting_approval"])).approvalIds ?? [];
    expect(approvalId).toBeDefined();
    // Alpha's next task in that session waits for the turn; beta's, submitted after it, does not.
    const alphaNext = await submit(ALPHA, { prompt: "Alpha: next in line", sessionId: "turn-session" });
    const beta = await submit(BETA, {
      prompt: "Beta: same session id, other tenant",
      sessionId: "turn-session",
    });
    expect((await finished(BETA, beta)).state).toBe("completed");
    expect((await status(ALPHA, held)).state).toBe("awaiting_approval");
    expect((await status(ALPHA, alphaNext)).state).toBe("queued");
    // The held turn and alpha's waiting order are alpha's keys; beta's turn came and went under its own.
    const turns = (await ownedKeys()).filter((k) => k.startsWith("turns:"));
    expect(turns.some((k) => k.includes("tenant:alpha:session:turn-session"))).toBe(true);
    for (const k of turns) expect(k).toMatch(NAMES_ITS_TENANT);
    // Beta cannot cancel alpha's held task to free the turn either.
    expect((await api(BETA, "DELETE", `/v1/tasks/${held}`)).status).toBe(404);

    const store = new ApprovalStore({ redis: conn, prefix, approverKeys: approvers.keys });
    await store.decide(approvers.sign("alice", approvalId as string, "approve"));
    expect((await finished(ALPHA, held)).state).toBe("completed");
    expect((await finished(ALPHA, alphaNext)).state).toBe("completed");
    expect((await status(ALPHA, alphaNext)).finishedAt).toBeGreaterThanOrEqual(
      (await status(ALPHA, held)).finishedAt ?? Infinity,
    );
  });

  it("budget: a user or session id spent out in one tenant leaves the same ids of another tenant free, and charges stay in their tenant", async () => {
    await ledger.setLimit("tenant:alpha:user:budget-user", { maxTokens: 1, period: "none" });
    await ledger.setLimit("tenant:alpha:session:budget-session", { maxTokens: 1, period: "none" });
    const byUser = await submit(ALPHA, { prompt: "Alpha: a budgeted question", userId: "budget-user" });
    const bySession = await submit(ALPHA, {
      prompt: "Alpha: a budgeted question",
      sessionId: "budget-session",
    });
    for (const id of [byUser, bySession]) {
      const s = await finished(ALPHA, id);
      expect(s.state).toBe("failed");
      expect(s.error?.code).toBe("BUDGET_EXCEEDED");
    }

    const alphaBefore = await ledger.getStats("tenant:alpha");
    const beta = await submit(BETA, {
      prompt: "Beta: a budgeted question",
      userId: "budget-user",
      sessionId: "budget-session",
    });
    const betaDone = await finished(BETA, beta);
    expect(betaDone.state).toBe("completed");
    // Beta's user and session scopes hold exactly beta's task, whatever alpha's same names hold.
    const usage = betaDone.result?.usage;
    const betaTokens = usage
      ? usage.input + usage.output + usage.cacheCreationInput + usage.cacheReadInput
      : Number.NaN;
    expect(betaTokens).toBeGreaterThan(0);
    expect((await ledger.getStats("tenant:beta:user:budget-user")).used.tokens).toBe(betaTokens);
    expect((await ledger.getStats("tenant:beta:session:budget-session")).used.tokens).toBe(betaTokens);
    expect((await ledger.getStats("tenant:alpha:user:budget-user")).used.tokens).toBe(0);
    expect((await ledger.getStats("tenant:alpha:session:budget-session")).used.tokens).toBe(0);
    expect((await ledger.getStats("tenant:alpha")).used).toEqual(alphaBefore.used);
  });

  it("memory: what a user remembered is never recalled for the same userId of another tenant", async () => {
    const remembered = await submit(ALPHA, {
      prompt: "Remember that my locker code is 9731",
      userId: "mem-user",
    });
    expect((await finished(ALPHA, remembered)).state).toBe("completed");

    const beta = await submit(BETA, {
      prompt: "What do you remember about my locker code, beta?",
      userId: "mem-user",
    });
    expect((await finished(BETA, beta)).state).toBe("completed");
    const alpha = await submit(ALPHA, {
      prompt: "What do you remember about my locker code, alpha?",
      userId: "mem-user",
    });
    expect((await finished(ALPHA, alpha)).state).toBe("completed");

    // Neither the recalled-memories system prompt nor the recall tool's result gave beta the code,
    expect(seenWith("my locker code, beta?").length).toBeGreaterThan(0);
    for (const seen of seenWith("my locker code, beta?")) expect(seen).not.toContain("9731");
    // while alpha's own user gets it back (so a leak would have shown).
    expect(seenWith("my locker code, alpha?").some((seen) => seen.includes("9731"))).toBe(true);
  });

  it("tasks: another tenant's task or group is 404 everywhere, and the same idempotency key makes two tasks", async () => {
    const keyed = await api<{ taskId: string; deduplicated: boolean }>(
      ALPHA,
      "POST",
      "/v1/tasks",
      { prompt: "Alpha: keyed task" },
      { "idempotency-key": "same-key" },
    );
    const other = await api<{ taskId: string; deduplicated: boolean }>(
      BETA,
      "POST",
      "/v1/tasks",
      { prompt: "Beta: keyed task" },
      { "idempotency-key": "same-key" },
    );
    expect(keyed.status).toBe(202);
    expect(other.status).toBe(202);
    expect(other.body.taskId).not.toBe(keyed.body.taskId);
    expect(other.body.deduplicated).toBe(false);
    const again = await api<{ taskId: string; deduplicated: boolean }>(
      ALPHA,
      "POST",
      "/v1/tasks",
      { prompt: "Alpha: keyed task" },
      { "idempotency-key": "same-key" },
    );
    expect(again.body).toMatchObject({ taskId: keyed.body.taskId, deduplicated: true });

    const group = await api<{ groupId: string; taskIds: string[] }>(ALPHA, "POST", "/v1/task-groups", {
      tasks: [{ prompt: "Alpha: group child" }],
    });
    expect(group.status).toBe(202);
    const alphaTask = keyed.body.taskId;
    expect((await finished(ALPHA, alphaTask)).result?.text).toContain('You asked: "Alpha: keyed task"');
    expect((await finished(BETA, other.body.taskId)).state).toBe("completed");

    for (const id of [alphaTask, ...group.body.taskIds]) {
      expect((await api(BETA, "GET", `/v1/tasks/${id}`)).status, id).toBe(404);
      expect((await api(BETA, "DELETE", `/v1/tasks/${id}`)).status, id).toBe(404);
      const events = await fetch(`${producer.url}/v1/tasks/${id}/events`, {
        headers: { authorization: `Bearer ${BETA}` },
      });
      await events.body?.cancel();
      expect(events.status, id).toBe(404);
      expect((await api(BETA, "GET", `/admin/queues/api/queues/tasks/${id}`)).status, id).toBe(404);
    }
    expect((await api(BETA, "GET", `/v1/task-groups/${group.body.groupId}`)).status).toBe(404);
    expect((await api(ALPHA, "GET", `/v1/task-groups/${group.body.groupId}`)).status).toBe(200);
    const board = await api<{ queues: { jobs: { id: string }[] }[] }>(
      BETA,
      "GET",
      "/admin/queues/api/queues?activeQueue=tasks&status=completed",
    );
    const visible = board.body.queues.flatMap((q) => q.jobs.map((j) => j.id));
    expect(visible).toContain(other.body.taskId);
    expect(visible).not.toContain(alphaTask);
  });

  it("every tenant-owned key in Redis names its tenant", async () => {
    const owned = await ownedKeys();
    // Every family that outlives its tasks is there, so the check is not vacuous (turn keys go
    // when a session's last task ends, tool journal entries when their task completes; the turns
    // and journal tests check those names).
    for (const family of ["session:", "memory:ids:"])
      expect(
        owned.some((k) => k.startsWith(family)),
        family,
      ).toBe(true);
    for (const k of owned) expect(k).toMatch(NAMES_ITS_TENANT);
    const scopes = await ledger.listScopes();
    for (const s of scopes) expect(s).toMatch(/^(global|tenant:(alpha|beta)(:(user|session):.+)?)$/);
  });
});
