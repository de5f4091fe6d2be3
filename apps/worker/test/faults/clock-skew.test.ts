import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { BudgetLedger } from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { startApprovalCluster, writePolicyFile, type ApprovalCluster } from "../approvals-cluster.js";
import { startWorkerProcess, waitStarted, type WorkerProcess } from "../worker-processes.js";

// Hosts whose time sync broke. Every lease, run slot and expiry Agentry writes is a timestamp that
// other processes compare with their own clock, so a worker whose host clock runs hours fast
// would, on its host's clock alone, reap reservations other workers are still using, expire
// approvals nobody has had time to decide and drop other workers' run slots; and BullMQ, whose
// delays run on host clocks, would run parked tasks at once, again and again. So each process
// judges Agentry's time by Redis's clock (`keepClockSynced`), and a worker further from it than
// AGENTRY_MAX_CLOCK_SKEW_MS takes no jobs. The skewed workers here run with a preload that moves
// their Date.now() and `new Date()`.

const SKEWED_CLOCK = fileURLToPath(new URL("./skewed-clock.mjs", import.meta.url));
/** Steps a skewed worker's clock: a whole file at once (written aside, then renamed over). */
function setSkew(file: string, ms: string): void {
  writeFileSync(`${file}.next`, ms);
  renameSync(`${file}.next`, file);
}
const TWO_HOURS = 2 * 3_600_000;

const redis = useTestRedis("clock-skew");

/** A worker process whose host clock is `skewMs` off. */
function startSkewedWorker(name: string, env: Record<string, string>, skewMs: number): WorkerProcess {
  return startWorkerProcess(
    name,
    { ...env, AGENTRY_TEST_CLOCK_SKEW_MS: String(skewMs) },
    { nodeArgs: ["--import", SKEWED_CLOCK] },
  );
}

const POLICY = `version: 1
policies:
  - name: approve-deletes
    when:
      tool: delete_resource
    then: require_approval
    ttl: 1h
`;

/** A port nothing listens on. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The worker's /healthz answer. */
async function healthOf(port: number): Promise<unknown> {
  return (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
}

let cluster: ApprovalCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** A task parked on a pending 1 h approval, and a call in flight elsewhere whose lease runs 2 min. */
async function pendingWork(c: ApprovalCluster) {
  const taskId = await c.submit("delete tmp-1 in development");
  const [approvalId] = (await c.awaitingApproval(taskId)).approvalIds;
  if (!approvalId) throw new Error("no approval id");
  const ledger = new BudgetLedger({ redis: c.conn, prefix: c.prefix });
  const held = await ledger.reserve({
    taskId: "task_in_flight_elsewhere",
    scopes: ["global", "tenant:acme"],
    amount: { tokens: 5_000, costMicroUsd: 9_000 },
    leaseMs: 120_000,
  });
  if (!held.ok) throw new Error(`reserve refused: ${held.reason}`);
  return { taskId, approvalId, ledger, reservationId: held.reservation.id };
}

/**
 * Resolves once a worker's reconcile pass (approval expiry, then the lease reaper) has run since
 * the call: it reaps a reservation whose lease has lapsed, made here, exactly once.
 */
async function reconcilePassRan(c: ApprovalCluster, ledger: BudgetLedger): Promise<void> {
  const taskId = `task_dead_elsewhere_${Math.random().toString(36).slice(2)}`;
  const lapsed = await ledger.reserve({
    taskId,
    scopes: ["global"],
    amount: { tokens: 300, costMicroUsd: 500 },
    leaseMs: 1,
  });
  if (!lapsed.ok) throw new Error("reserve refused");
  await expect
    .poll(async () => (await c.auditOf(taskId)).map((e) => e.type), { timeout: 60_000 })
    .toEqual(["budget"]);
}

/**
 * Nothing was taken from the pending work: the approval is still pending, the call's own settle
 * charges what it used (it corrects no reaper's charge of the whole reservation, and no reaper
 * audited it); then the approval is honoured and the tool runs once.
 */
async function untouchedThenCompleted(c: ApprovalCluster, work: Awaited<ReturnType<typeof pendingWork>>) {
  expect((await c.store.require(work.approvalId)).status).toBe("pending");
  const settled = await work.ledger.settle(work.reservationId, { tokens: 1_200, costMicroUsd: 2_000 });
  expect(settled).toMatchObject({ settled: true, alreadySettled: false, charged: { tokens: 1_200 } });
  expect(settled.correctedReap).toBeUndefined();
  expect(await c.auditOf("task_in_flight_elsewhere")).toEqual([]);
  expect(await c.store.tryDecide(c.approvers.sign("alice", work.approvalId, "approve"))).toMatchObject({
    type: "decided",
    status: "approved",
  });
  await c.client.wait(work.taskId, { timeoutMs: 60_000 });
  expect((await c.client.status(work.taskId)).state).toBe("completed");
  expect((await c.deletions()).filter((d) => d.taskId === work.taskId)).toHaveLength(1);
  expect((await c.audit.verify()).ok).toBe(true);
}

describe("a worker whose host clock is hours off", () => {
  it("refuses to start, 2 h fast or 2 h slow, with one line saying what to fix, and touches nothing", async () => {
    cluster = await startApprovalCluster(redis, { workers: 1, policy: writePolicyFile(POLICY) });
    const c = cluster;
    const work = await pendingWork(c);

    for (const skew of [TWO_HOURS, -TWO_HOURS]) {
      const w = startSkewedWorker(skew > 0 ? "fast" : "slow", c.env, skew);
      c.workers.push(w);
      expect(
        w.child.exitCode ?? (await new Promise((resolve) => w.child.once("exit", (code) => resolve(code)))),
      ).toBe(2);
      const line = w
        .output()
        .split("\n")
        .find((l) => l.startsWith("agentry-worker: "));
      expect(line).toMatch(
        new RegExp(
          `^agentry-worker: this host's clock is \\d+ ms ${skew > 0 ? "ahead of" : "behind"} Redis's, more than the 1000 ms allowed \\(AGENTRY_MAX_CLOCK_SKEW_MS\\)`,
        ),
      );
    }
    await untouchedThenCompleted(c, work);
  }, 240_000);

  it("with the check off, workers whose hosts agree with each other but not with Redis park and resume tasks on time", async () => {
    // Redis's host is the one 2 h off here: every worker's clock is 2 h ahead of it.
    cluster = await startApprovalCluster(redis, { workers: 0, policy: writePolicyFile(POLICY) });
    const c = cluster;
    for (const name of ["w1", "w2"]) {
      const w = startSkewedWorker(
        name,
        { ...c.env, AGENTRY_MAX_CLOCK_SKEW_MS: "0", AGENTRY_RECONCILE_INTERVAL_MS: "200" },
        TWO_HOURS,
      );
      c.workers.push(w);
      await waitStarted(w);
    }
    const work = await pendingWork(c);
    const parked = await c.client.status(work.taskId);
    // Once a reconcile pass has run after the park, BullMQ has had every chance to wake the
    // parked task early: it is still parked, on its first park.
    await reconcilePassRan(c, work.ledger);
    expect(await c.client.status(work.taskId)).toMatchObject({
      state: "awaiting_approval",
      attempts: parked.attempts,
    });
    await untouchedThenCompleted(c, work);
    const next = await c.submit("What is the weather in Lima?");
    await c.client.wait(next, { timeoutMs: 60_000 });
    expect((await c.client.status(next)).state).toBe("completed");
  }, 240_000);

  it("a host clock stepped 2 h while the worker runs: it stops taking jobs, judges leases and expiries by Redis's time meanwhile, and takes jobs again once the clock is back", async () => {
    cluster = await startApprovalCluster(redis, { workers: 0, policy: writePolicyFile(POLICY) });
    const c = cluster;
    const skewFile = join(mkdtempSync(join(tmpdir(), "agentry-skew-")), "skew");
    setSkew(skewFile, "0");
    const port = await freePort();
    const w = startWorkerProcess(
      "stepped",
      {
        ...c.env,
        AGENTRY_WORKER_PORT: String(port),
        AGENTRY_TEST_CLOCK_SKEW_FILE: skewFile,
        AGENTRY_CLOCK_SYNC_MS: "200",
        AGENTRY_RECONCILE_INTERVAL_MS: "200",
      },
      { nodeArgs: ["--import", SKEWED_CLOCK] },
    );
    c.workers.push(w);
    await waitStarted(w);
    const work = await pendingWork(c);

    setSkew(skewFile, String(TWO_HOURS));
    await expect
      .poll(() => w.output().includes('"event":"clock-skew-paused"'), { timeout: 60_000 })
      .toBe(true);
    // A reconcile pass (approval expiry, then the reaper) has run since the step.
    await reconcilePassRan(c, work.ledger);

    // Paused, BullMQ's loop ends once it has nothing to wait for; /healthz says why.
    await expect
      .poll(() => healthOf(port), { timeout: 60_000, interval: 100 })
      .toMatchObject({
        ok: false,
        running: false,
        reasons: expect.arrayContaining([
          expect.stringMatching(/^taking no jobs: this host's clock is \d+ ms ahead of Redis's$/),
        ]) as unknown,
      });

    // And /metrics, for an alert before it comes to that.
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^agentry_clock_skew_paused\S* 1$/m);
    const offset = Number(/^agentry_clock_offset_seconds\S* (\S+)$/m.exec(metrics)?.[1]);
    expect(Math.abs(offset + TWO_HOURS / 1000)).toBeLessThan(60);

    // Back under the limit but not within half of it: it stays paused (no flapping at the limit).
    setSkew(skewFile, "700");
    const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    await expect
      .poll(async () => Number(/^agentry_clock_offset_seconds\S* (\S+)$/m.exec(await scrape())?.[1]), {
        timeout: 60_000,
        interval: 100,
      })
      .toBeCloseTo(-0.7, 0);
    expect(await scrape()).toMatch(/^agentry_clock_skew_paused\S* 1$/m);

    setSkew(skewFile, "0");
    await expect
      .poll(() => w.output().includes('"event":"clock-skew-resumed"'), { timeout: 60_000 })
      .toBe(true);
    await untouchedThenCompleted(c, work);
    // It takes new work again.
    const next = await c.submit("What is the weather in Lima?");
    await c.client.wait(next, { timeoutMs: 60_000 });
    expect((await c.client.status(next)).state).toBe("completed");
    expect(await healthOf(port)).toMatchObject({ ok: true, running: true, reasons: [] });
    expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toMatch(
      /^agentry_clock_skew_paused\S* 0$/m,
    );
  }, 240_000);
});
