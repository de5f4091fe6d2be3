import { afterEach, describe, expect, it } from "vitest";
import { RedisSessionTurns } from "@agentry/memory";
import { AgentryClient } from "@agentry/runtime";
import { AuditLog, anchorChains, verifyChainsWithAnchors, type AuditEntry } from "@agentry/governance";
import { startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { referenceReply } from "@agentry/reference/testing";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "./worker-processes.js";

// AGENTRY_AUDIT_LANES=4 with three worker processes: each leases a lane of its own, every task's
// entries are written once across the lanes, every lane verifies (and is anchored), and a lane
// freed by a stopped worker is continued by the next one.
const redis = useTestRedis("audit-lanes");
const AUDIT_KEY = "lanes-audit-key-0123456789abcdefghijklm";
const LANES = 4;

let fake: FakeAnthropic | undefined;
const workers: WorkerProcess[] = [];
const clients: AgentryClient[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.kill()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await fake?.close();
});

/** The lane a worker logged it writes. */
function laneOf(w: WorkerProcess): number {
  const match = /"event":"audit-lane","lane":(\d+)/.exec(w.output());
  if (!match) throw new Error(`worker ${w.name} logged no audit lane:\n${w.output()}`);
  return Number(match[1]);
}

describe("audit lanes across worker processes", () => {
  it("give each process its own lane; every entry lands once and every lane verifies", async () => {
    fake = await startFakeAnthropic({ handler: referenceReply });
    const prefix = redis.freshPrefix();
    const env = {
      REDIS_URL: redis.url,
      AGENTRY_PREFIX: prefix,
      AGENTRY_LLM: "anthropic",
      ANTHROPIC_API_KEY: "test-key",
      ANTHROPIC_BASE_URL: fake.url,
      AGENTRY_AUDIT_KEY: AUDIT_KEY,
      AGENTRY_AUDIT_LANES: String(LANES),
      AGENTRY_CONCURRENCY: "8",
    };
    for (let i = 0; i < 3; i++) workers.push(startWorkerProcess(`lanes-${i + 1}`, env));
    await Promise.all(workers.map((w) => waitStarted(w)));
    expect(workers.map(laneOf).sort()).toEqual([1, 2, 3]);
    const conn = redis.client();
    for (const w of workers) expect(await conn.get(`${prefix}:audit:lane:${laneOf(w)}:owner`)).toBe(w.name);

    const client = new AgentryClient({
      url: redis.url,
      prefix,
      sessionOrder: new RedisSessionTurns({ redis: conn, prefix }),
    });
    clients.push(client);
    const submitAll = async (n: number, label: string) => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++)
        ids.push(
          (await client.submit({ prompt: `What's the weather in ${label}${i}?` }, { tenant: "acme" })).taskId,
        );
      const results = await Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 120_000 })));
      expect(results.every((r) => r.steps === 2)).toBe(true);
      return ids;
    };
    const ids = await submitAll(30, "City");

    const lanes = Array.from(
      { length: LANES },
      (_, lane) => new AuditLog({ redis: conn, prefix, lane, key: AUDIT_KEY }),
    );
    const all = async () => (await Promise.all(lanes.map((l) => l.read({ count: 100_000 })))).flat();
    const once = (entries: AuditEntry[], type: string, taskIds: string[]) =>
      expect(
        entries
          .filter((e) => e.type === type)
          .map((e) => e.taskId)
          .sort(),
      ).toEqual([...taskIds].sort());
    const entries = await all();
    once(entries, "request", ids);
    once(entries, "response", ids);
    // Each process wrote its own lane (the ones that ran tasks).
    const written = await Promise.all(lanes.map(async (l) => (await l.readHead()).seq));
    // (A process's log lines may reach this process after the completions it reported through Redis.)
    const busyNow = () => workers.filter((w) => w.output().includes('"event":"task-completed"'));
    await expect.poll(() => busyNow().length, { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    const busy = busyNow();
    for (const w of busy) expect(written[laneOf(w)]).toBeGreaterThan(0);
    for (const l of lanes) expect(await l.verify()).toMatchObject({ ok: true, authenticated: true });

    // One anchor line holds every lane's head.
    const file = join(mkdtempSync(join(tmpdir(), "agentry-lanes-")), "anchors");
    const anchored = await anchorChains(lanes, file);
    if (!anchored.ok) throw new Error(`not anchored: ${JSON.stringify(anchored)}`);
    expect(anchored.anchors.map((a) => a.stream)).toEqual(lanes.map((l) => l.streamKey));

    // A worker stopped gracefully frees its lane; the next worker takes it and continues its chain.
    const stopping = busy[0] as WorkerProcess;
    const freed = laneOf(stopping);
    const headBefore = await (lanes[freed] as AuditLog).readHead();
    expect(await stopping.stop()).toBe(0);
    workers.splice(workers.indexOf(stopping), 1);
    expect(await conn.exists(`${prefix}:audit:lane:${freed}:owner`)).toBe(0);
    const next = startWorkerProcess("lanes-4", env);
    workers.push(next);
    await waitStarted(next);
    expect(laneOf(next)).toBe(freed);
    // The other two stop too, so the next tasks all run on the new worker, on the freed lane.
    for (const w of workers.filter((w) => w !== next)) expect(await w.stop()).toBe(0);
    const more = await submitAll(12, "Town");
    once(await all(), "response", [...ids, ...more]);
    const lane = lanes[freed] as AuditLog;
    expect((await lane.readHead()).seq).toBeGreaterThan(headBefore.seq);
    expect(await lane.verify()).toMatchObject({ ok: true, authenticated: true });
    expect(await verifyChainsWithAnchors(lanes, file)).toMatchObject({ ok: true, chains: LANES });
  });
});
