import { afterEach, describe, expect, it } from "vitest";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient, type SubmitTaskInput } from "@agentry/runtime";
import {
  fakeReply,
  startFakeAnthropic,
  useTestRedis,
  type FakeAnthropic,
  type RecordedRequest,
} from "@agentry/testkit";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";

// Fair share across real worker processes. Every task's prompt is `fair <tenant> <n>` and answers
// in one model call, so the fake Messages API sees when each task runs: a task's call arrives
// after its worker admitted it (slot taken) and its response goes out before the worker frees
// the slot. Those two moments, observed outside the workers, are what the invariants are
// checked against.

const redis = useTestRedis("fair-mp");

let fake: FakeAnthropic | undefined;
const workers: WorkerProcess[] = [];
const clients: AgentryClient[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.kill()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await fake?.close();
  fake = undefined;
});

/** What the fake Messages API saw: first calls in arrival order, calls in flight per tenant and their peak. */
class Observed {
  readonly starts: { tenant: string; n: number }[] = [];
  readonly calls = new Map<string, number>();
  readonly inFlight = new Map<string, number>();
  readonly peak = new Map<string, number>();

  arrived(tenant: string, n: number): void {
    const key = `${tenant} ${n}`;
    const calls = (this.calls.get(key) ?? 0) + 1;
    this.calls.set(key, calls);
    if (calls === 1) this.starts.push({ tenant, n });
    const now = (this.inFlight.get(tenant) ?? 0) + 1;
    this.inFlight.set(tenant, now);
    this.peak.set(tenant, Math.max(now, this.peak.get(tenant) ?? 0));
  }

  answered(tenant: string): void {
    this.inFlight.set(tenant, (this.inFlight.get(tenant) ?? 0) - 1);
  }
}

/** `fair <tenant> <n>` from the request's last user message. */
function taskOf(request: RecordedRequest): { tenant: string; n: number } | undefined {
  const messages = request.body.messages ?? [];
  const last = [...messages].reverse().find((m) => m.role === "user");
  const content = last?.content;
  const text = typeof content === "string" ? content : (content ?? []).map((b) => b.text ?? "").join(" ");
  const match = /fair (\S+) (\d+)/.exec(text);
  return match ? { tenant: match[1] as string, n: Number(match[2]) } : undefined;
}

async function setup(options: { workers: number; concurrency: number; delayMs: number }) {
  const observed = new Observed();
  fake = await startFakeAnthropic({
    handler: (request) => {
      const task = taskOf(request);
      if (task) observed.arrived(task.tenant, task.n);
      return fakeReply.text(`done ${task?.tenant ?? "?"} ${task?.n ?? "?"}`, { delayMs: options.delayMs });
    },
    onResponseClosed: (request) => {
      const task = taskOf(request);
      if (task) observed.answered(task.tenant);
    },
  });
  const prefix = redis.freshPrefix();
  const env = {
    REDIS_URL: redis.url,
    AGENTRY_PREFIX: prefix,
    AGENTRY_LLM: "anthropic",
    ANTHROPIC_API_KEY: "test-key",
    ANTHROPIC_BASE_URL: fake.url,
    AGENTRY_CONCURRENCY: String(options.concurrency),
    AGENTRY_LOCK_DURATION_MS: "5000",
    AGENTRY_STALLED_INTERVAL_MS: "2000",
    AGENTRY_RECONCILE_INTERVAL_MS: "500",
    LOG_LEVEL: "info",
  };
  const conn = redis.client();
  const client = new AgentryClient({
    url: redis.url,
    prefix,
    sessionOrder: new RedisSessionTurns({ redis: conn, prefix }),
  });
  clients.push(client);
  await client.queue.waitUntilReady();
  const startWorkers = async () => {
    const started = Array.from({ length: options.workers }, (_, i) =>
      startWorkerProcess(`fair-w${i + 1}`, env),
    );
    workers.push(...started);
    await Promise.all(started.map((w) => waitStarted(w)));
  };
  /** Submits `n` tasks of a tenant (each in its own session unless `session` is given), 25 at a time. */
  const submit = async (tenant: string, n: number, extra: Partial<SubmitTaskInput> = {}) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i += 25) {
      const batch = Array.from({ length: Math.min(25, n - i) }, (_, j) =>
        client.submit({ prompt: `fair ${tenant} ${i + j}`, ...extra }, { tenant }),
      );
      ids.push(...(await Promise.all(batch)).map((t) => t.taskId));
    }
    return ids;
  };
  const waitAll = (ids: string[]) => Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 240_000 })));
  return { client, observed, startWorkers, submit, waitAll };
}

/** The longest run of one tenant's starts in `tenants`, which alternates between two tenants when fair. */
function longestRun(tenants: string[]): number {
  let longest = 0;
  let run = 0;
  for (const [i, t] of tenants.entries()) {
    run = i > 0 && tenants[i - 1] === t ? run + 1 : 1;
    longest = Math.max(longest, run);
  }
  return longest;
}

describe("fair share across worker processes", () => {
  it("never runs more of a tenant's tasks at once than its maxRunning, sampled throughout, while another tenant uses the free slots", async () => {
    const { client, observed, startWorkers, submit, waitAll } = await setup({
      workers: 3,
      concurrency: 6,
      delayMs: 300,
    });
    await client.setTenantSettings("capped", { maxRunning: 3 });
    await startWorkers();
    const [capped, free] = await Promise.all([submit("capped", 36), submit("free", 18)]);

    // Sample what a user sees (`agentry tenants show`) and what the model sees, until everything is done.
    const samples: { reported: number; inFlight: number }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [load] = await client.tenantLoad(["capped"]);
        samples.push({ reported: load?.running ?? 0, inFlight: observed.inFlight.get("capped") ?? 0 });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await waitAll([...capped, ...free]);
    sampling = false;
    await sampler;

    expect(samples.length).toBeGreaterThan(10);
    expect(Math.max(...samples.map((s) => s.reported))).toBeLessThanOrEqual(3);
    expect(Math.max(...samples.map((s) => s.inFlight))).toBeLessThanOrEqual(3);
    // Exactly: the peak of model calls of the capped tenant in flight at the same moment.
    expect(observed.peak.get("capped")).toBe(3);
    // The cap is the tenant's, not the queue's: the other tenant ran more at once.
    expect(observed.peak.get("free")).toBeGreaterThan(3);
    // Every task ran once, held-back ones included (they parked without a slot and were woken).
    expect([...observed.calls.values()].every((n) => n === 1)).toBe(true);
    expect(observed.calls.size).toBe(54);
    await expect
      .poll(() => workers.some((w) => w.output().includes('"event":"task-capped"')), { timeout: 30_000 })
      .toBe(true);
    await expect
      .poll(async () => client.tenantLoad(["capped", "free"]))
      .toEqual([
        { tenant: "capped", maxRunning: 3, weight: 1, running: 0, waiting: 0 },
        { tenant: "free", maxRunning: null, weight: 1, running: 0, waiting: 0 },
      ]);
  }, 240_000);

  it("starts a bounded number of one flooding tenant's tasks between two starts of the other's", async () => {
    const { observed, startWorkers, submit, waitAll } = await setup({
      workers: 2,
      concurrency: 4,
      delayMs: 0,
    });
    // First in first out, b's first task would start after all 150 of a's.
    const a = await submit("a", 150);
    const b = await submit("b", 150);
    await startWorkers();
    await waitAll([...a, ...b]);

    const order = observed.starts.map((s) => s.tenant);
    const lastA = order.lastIndexOf("a");
    const lastB = order.lastIndexOf("b");
    // While both tenants still have tasks to start.
    const both = order.slice(0, Math.min(lastA, lastB) + 1);
    expect(both.length).toBeGreaterThan(250);
    // Taken in strict alternation; the 8 slots of two processes reorder starts by a few places at most.
    expect(longestRun(both)).toBeLessThanOrEqual(10);
  }, 240_000);

  it("gives tenants weighted 3:1 completions in 3:1 (±10 %) while both have work waiting", async () => {
    const { client, startWorkers, submit, waitAll } = await setup({ workers: 2, concurrency: 4, delayMs: 0 });
    await client.setTenantSettings("heavy", { weight: 3 });
    const heavy = await submit("heavy", 450);
    const light = await submit("light", 300);
    await startWorkers();
    await waitAll([...heavy, ...light]);

    const finishedOn = async (ids: string[]) =>
      Promise.all(ids.map(async (id) => (await client.queue.getJob(id))?.finishedOn ?? Number.NaN));
    const [heavyDone, lightDone] = await Promise.all([finishedOn(heavy), finishedOn(light)]);
    // Both were backlogged until the first of them ran out of tasks.
    const end = Math.min(Math.max(...heavyDone), Math.max(...lightDone));
    const heavyCount = heavyDone.filter((t) => t <= end).length;
    const lightCount = lightDone.filter((t) => t <= end).length;
    expect(heavyCount + lightCount).toBeGreaterThan(500);
    const ratio = heavyCount / lightCount;
    expect(ratio, `heavy ${heavyCount} : light ${lightCount}`).toBeGreaterThanOrEqual(2.7);
    expect(ratio, `heavy ${heavyCount} : light ${lightCount}`).toBeLessThanOrEqual(3.3);
  }, 240_000);

  it("keeps a capped tenant's session in submit order while another tenant floods, and every task finishes", async () => {
    const { client, observed, startWorkers, submit, waitAll } = await setup({
      workers: 2,
      concurrency: 4,
      delayMs: 20,
    });
    await client.setTenantSettings("chatty", { maxRunning: 2 });
    await startWorkers();
    const flood = submit("flood", 80);
    // One session: each task must start after the one before it has finished (turns), whatever the cap parks.
    const chatty: string[] = [];
    for (let i = 0; i < 10; i++)
      chatty.push(
        (await client.submit({ prompt: `fair chatty ${i}`, sessionId: "s1" }, { tenant: "chatty" })).taskId,
      );
    await waitAll([...chatty, ...(await flood)]);

    const chattyStarts = observed.starts.filter((s) => s.tenant === "chatty").map((s) => s.n);
    expect(chattyStarts).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(observed.peak.get("chatty")).toBe(1);
    const results = await Promise.all(chatty.map((id) => client.status(id)));
    expect(results.map((r) => r.state)).toEqual(Array(10).fill("completed"));
  }, 240_000);
});
