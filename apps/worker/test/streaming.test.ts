// Live text across processes: two worker processes stream the real SDK's answers (from the fake
// Messages API, paced word by word) into the task's stream; the producer process serves it as SSE.
// A task parks for approval, its worker goes away, the other worker resumes it: one SSE
// connection sees the whole answer, each piece once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalStore } from "@agentry/governance";
import { createTestApprovers } from "@agentry/governance/testing";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient } from "@agentry/runtime";
import { referenceReply } from "@agentry/reference/testing";
import {
  startFakeAnthropic,
  useTestRedis,
  type FakeAnthropic,
  type FakeContentBlock,
  type FakeReply,
  type RecordedRequest,
} from "@agentry/testkit";
import {
  APPROVAL_POLICY,
  startProducerProcess,
  writeTempFile,
  type ProducerProcess,
} from "./faults/harness.js";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";

const redis = useTestRedis("streaming");
const API_KEY = "key-streaming-test";
const PREAMBLE = "I will delete that resource for you once it is approved.";

/** The reference rules, with a sentence of text before every tool call (so both steps stream text), word by word. */
function reply(request: RecordedRequest): FakeReply {
  const answer = referenceReply(request);
  const content: FakeContentBlock[] =
    typeof answer.content === "string" ? [{ type: "text", text: answer.content }] : [...answer.content];
  if (content.some((b) => b.type === "tool_use")) content.unshift({ type: "text", text: PREAMBLE });
  return { ...answer, content, stream: { eventDelayMs: 15 } };
}

interface SseEvent {
  id: string;
  event: string;
  data: {
    type: string;
    step?: number;
    offset?: number;
    text?: string;
    progress?: { phase: string; step: number };
    result?: { text: string; steps: number };
  };
}

/** Reads a task's SSE stream to its end with fetch, recording each event as it arrives. */
async function readEvents(url: string, events: SseEvent[]): Promise<void> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${API_KEY}` } });
  expect(res.status).toBe(200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const field = (name: string) =>
        block
          .split("\n")
          .find((l) => l.startsWith(`${name}: `))
          ?.slice(name.length + 2);
      const data = field("data");
      if (data !== undefined)
        events.push({
          id: field("id") ?? "",
          event: field("event") ?? "message",
          data: JSON.parse(data) as SseEvent["data"],
        });
    }
  }
}

let fake: FakeAnthropic;
let producer: ProducerProcess;
let workers: WorkerProcess[] = [];
let client: AgentryClient;
let store: ApprovalStore;
const approvers = createTestApprovers(["alice"]);

beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: reply });
  const prefix = redis.freshPrefix();
  const approversFile = writeTempFile("approvers", approvers.fileText);
  const keysFile = writeTempFile("api-keys", `${API_KEY}=acme\n`);
  const env = {
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_POLICY_FILE: writeTempFile("policy.yaml", APPROVAL_POLICY),
    AGENTRY_APPROVERS_FILE: approversFile,
    AGENTRY_CONCURRENCY: "1",
    AGENTRY_LOCK_DURATION_MS: "5000",
    AGENTRY_STALLED_INTERVAL_MS: "2000",
    AGENTRY_SHUTDOWN_GRACE_MS: "2000",
  };
  workers = [startWorkerProcess("w1", env), startWorkerProcess("w2", env)];
  producer = await startProducerProcess({
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_API_KEYS_FILE: keysFile,
  });
  await Promise.all(workers.map((w) => waitStarted(w, 60_000)));
  const conn = redis.client();
  client = new AgentryClient({
    url: redis.url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis: conn, prefix }),
  });
  store = new ApprovalStore({ redis: conn, prefix, approverKeys: approvers.keys });
}, 120_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await producer?.kill();
  await client?.close();
  await fake?.close();
});

describe("streaming answers across worker processes", () => {
  it("a task that parks for approval and resumes on another worker continues the same SSE stream, each piece of text once", async () => {
    const submitted = await fetch(`${producer.url}/v1/tasks`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ prompt: "delete db-7 in staging", userId: "ops" }),
    });
    expect(submitted.status).toBe(202);
    const { taskId, eventsUrl } = (await submitted.json()) as { taskId: string; eventsUrl: string };
    const events: SseEvent[] = [];
    const reading = readEvents(`${producer.url}${eventsUrl}`, events);
    const deltasOf = (step: number) => events.filter((e) => e.event === "delta" && e.data.step === step);

    // Step 1 streams its sentence live over SSE, then the task parks.
    await expect.poll(() => deltasOf(1).length, { timeout: 60_000 }).toBeGreaterThan(0);
    await expect
      .poll(async () => (await client.status(taskId)).state, { timeout: 60_000 })
      .toBe("awaiting_approval");
    await expect
      .poll(() => events.some((e) => e.data.progress?.phase === "awaiting_approval"), { timeout: 30_000 })
      .toBe(true);
    const approvalId = (await client.status(taskId)).approvalIds?.[0] as string;

    // The worker that ran it goes away; the other one must resume the task.
    await expect.poll(() => workers.some((w) => w.output().includes(taskId)), { timeout: 30_000 }).toBe(true);
    const first = workers.find((w) => w.output().includes(taskId)) as WorkerProcess;
    const other = workers.find((w) => w !== first) as WorkerProcess;
    expect(await first.stop()).toBe(0);
    await store.decide(approvers.sign("alice", approvalId, "approve"));
    await reading;

    const final = events.at(-1);
    expect(final?.event).toBe("completed");
    expect(other.output()).toMatch(
      new RegExp(`"taskId":"${taskId}"[^\\n]*"resumed":true|"resumed":true[^\\n]*"taskId":"${taskId}"`),
    );
    // One connection saw it all, in order: step 1's text, the park, step 2's text, the end.
    const kinds = events.map((e) =>
      e.event === "progress" ? `progress:${e.data.progress?.phase}` : e.event,
    );
    expect(kinds.indexOf("progress:awaiting_approval")).toBeGreaterThan(
      kinds.lastIndexOf("delta", kinds.indexOf("progress:awaiting_approval")),
    );
    expect(deltasOf(2).length).toBeGreaterThan(0);
    for (const step of [1, 2]) {
      const pieces = deltasOf(step);
      // Each piece once: every piece starts where the one before ended (no restart, no repeat)...
      expect(pieces.map((e) => e.data.offset)).toEqual(
        pieces.map((_, i) => pieces.slice(0, i).reduce((n, e) => n + (e.data.text ?? "").length, 0)),
      );
    }
    // ...so plain concatenation is each step's text: the preamble, then the final answer.
    expect(
      deltasOf(1)
        .map((e) => e.data.text)
        .join(""),
    ).toBe(PREAMBLE);
    expect(
      deltasOf(2)
        .map((e) => e.data.text)
        .join(""),
    ).toBe(final?.data.result?.text);
    expect(final?.data.result?.text).toContain("db-7 was deleted in staging");
    // The fake sent the answers word by word: more pieces reached the client than one per step.
    expect(deltasOf(1).length + deltasOf(2).length).toBeGreaterThan(2);
  }, 180_000);
});
