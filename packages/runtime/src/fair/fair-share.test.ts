import { Queue } from "bullmq";
import { useTestRedis } from "@agentry/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { BULLMQ_PRIORITY_LIMIT, FairShare, VIRTUAL_UNIT, type FairShareOptions } from "./fair-share.js";

const redis = useTestRedis("fair");

function manualClock(t = 1_000_000) {
  return {
    t,
    now() {
      return this.t;
    },
  };
}

const queues: Queue[] = [];
afterEach(async () => {
  await Promise.all(queues.splice(0).map((q) => q.close()));
});

function setup(options: Partial<FairShareOptions> = {}) {
  const prefix = `{${redis.freshPrefix("fair")}}`;
  const conn = redis.client();
  const fair = new FairShare({ redis: conn, prefix, ...options });
  const queue = new Queue("tasks", { connection: redis.client(), prefix });
  queues.push(queue);
  /** Stamps and enqueues tasks of one tenant the way AgentryClient does; returns their ids. */
  const submit = async (tenant: string, n: number) => {
    const ids = Array.from(
      { length: n },
      (_, i) => `${tenant}-${i}-${Math.random().toString(36).slice(2, 8)}`,
    );
    const { stamps } = await fair.stamp(tenant, ids, { fair: true });
    for (const s of stamps)
      await queue.add("agent.run", { tenant }, { jobId: s.taskId, priority: s.priority });
    return ids;
  };
  /** The order BullMQ would hand the prioritized jobs out in (its own sorted set, lowest score first). */
  const order = async () => (await queue.getPrioritized(0, -1)).map((j) => j.id as string);
  return { prefix, conn, fair, queue, submit, order };
}

describe("FairShare order", () => {
  it("interleaves a tenant that arrives after another's flood with it, instead of queueing it behind", async () => {
    const { submit, order } = setup();
    const a = await submit("a", 6);
    const b = await submit("b", 3);
    expect(await order()).toEqual([a[0], b[0], a[1], b[1], a[2], b[2], a[3], a[4], a[5]]);
  });

  it("gives a tenant of weight 3 three places for every one of a tenant of weight 1", async () => {
    const { fair, submit, order } = setup();
    await fair.setSettings("heavy", { weight: 3 });
    const light = await submit("light", 4);
    const heavy = await submit("heavy", 12);
    const tenants = (await order()).map((id) => (heavy.includes(id) ? "H" : light.includes(id) ? "L" : "?"));
    // Each round of virtual time holds three of heavy's tasks and one of light's.
    expect(tenants.join("")).toBe("LHHHLHHHLHHHLHHH");
  });

  it("starts a tenant with nothing waiting at the virtual time, so earlier (or cancelled) tags are not held against it", async () => {
    const { fair } = setup();
    const first = await fair.stamp("a", ["t1", "t2", "t3"], { fair: true });
    expect(first.stamps.map((s) => s.priority)).toEqual([1, 2, 3]);
    // All three cancelled: the tenant has nothing waiting any more.
    for (const id of ["t1", "t2", "t3"]) await fair.forget("a", id);
    const again = await fair.stamp("a", ["t4"], { fair: true });
    expect(again.stamps[0]?.priority).toBe(1);
  });

  it("advances the virtual time as tasks end, so a tenant arriving behind a flood lands beside the flood's running tasks", async () => {
    const { fair } = setup();
    const { stamps } = await fair.stamp("a", ["t1", "t2", "t3", "t4", "t5", "t6"], { fair: true });
    const slots = [];
    for (const s of stamps.slice(0, 4))
      slots.push(
        (await fair.admit({ taskId: s.taskId, tenant: "a", attempt: "x", priority: s.priority })).slot,
      );
    expect(slots.map((s) => s.tag)).toEqual([0, 1, 2, 3].map((k) => k * VIRTUAL_UNIT));
    // t1 and t2 end; t3 and t4 still run. The virtual time is t2's tag.
    for (const slot of slots.slice(0, 2)) await fair.release("a", slot);
    const late = await fair.stamp("b", ["u1", "u2"], { fair: true });
    expect(late.stamps.map((s) => s.tag)).toEqual([1 * VIRTUAL_UNIT, 2 * VIRTUAL_UNIT]);
    // So b's two tasks come before a's next (t5, priority 5): they take the next free slots.
    expect(late.stamps.map((s) => s.priority)).toEqual([2, 3]);
    expect(stamps[4]?.priority).toBe(5);
  });

  it("never moves the virtual time back when an old task (resumed from a park) ends", async () => {
    const { fair } = setup();
    const { stamps } = await fair.stamp("a", ["t1", "t2", "t3"], { fair: true });
    const third = await fair.admit({
      taskId: "t3",
      tenant: "a",
      attempt: "x",
      priority: stamps[2]?.priority ?? 0,
    });
    await fair.release("a", third.slot);
    const first = await fair.admit({
      taskId: "t1",
      tenant: "a",
      attempt: "y",
      priority: stamps[0]?.priority ?? 0,
    });
    await fair.release("a", first.slot);
    expect((await fair.stamp("b", ["u1"], { fair: true })).stamps[0]?.tag).toBe(2 * VIRTUAL_UNIT);
  });

  it("stamps priority 0 (first in first out) with fair order off, still counting the tasks as waiting", async () => {
    const { fair } = setup();
    const { stamps } = await fair.stamp("a", ["t1", "t2"], { fair: false });
    expect(stamps.map((s) => s.priority)).toEqual([0, 0]);
    expect((await fair.load(["a"]))[0]).toMatchObject({ waiting: 2, running: 0 });
  });

  it("clamps priorities to BullMQ's range", async () => {
    expect(FairShare.priorityOf(-5, 0)).toBe(1);
    expect(FairShare.priorityOf(10.7 * VIRTUAL_UNIT, 3 * VIRTUAL_UNIT)).toBe(8);
    expect(FairShare.priorityOf(2 ** 22 * VIRTUAL_UNIT, 0)).toBe(BULLMQ_PRIORITY_LIMIT);
  });
});

describe("FairShare caps", () => {
  it("admits at most maxRunning attempts, holds the rest back and hands freed slots to them in submit order", async () => {
    const { fair } = setup();
    await fair.setSettings("a", { maxRunning: 2 });
    const { stamps } = await fair.stamp("a", ["t1", "t2", "t3", "t4"], { fair: true });
    const admissions = [];
    for (const s of stamps)
      admissions.push(
        await fair.admit({ taskId: s.taskId, tenant: "a", attempt: `tok-${s.taskId}`, priority: s.priority }),
      );
    expect(admissions.map((x) => x.admitted)).toEqual([true, true, false, false]);
    expect(await fair.cappedTenants()).toEqual(["a"]);
    expect((await fair.load(["a"]))[0]).toMatchObject({ running: 2, waiting: 2, maxRunning: 2 });

    // t1 ends: its slot is reserved for t3 (the oldest held back), which a later attempt then takes.
    expect((await fair.release("a", admissions[0]?.slot)).wake).toEqual(["t3"]);
    expect((await fair.load(["a"]))[0]?.running).toBe(2);
    // Someone else arriving now finds no free slot: the reserved one is t3's.
    expect((await fair.admit({ taskId: "t4", tenant: "a", attempt: "tok-t4b", priority: 4 })).admitted).toBe(
      false,
    );
    expect((await fair.admit({ taskId: "t3", tenant: "a", attempt: "tok-t3b", priority: 3 })).admitted).toBe(
      true,
    );
    expect((await fair.load(["a"]))[0]).toMatchObject({ running: 2, waiting: 1 });

    // Raising the cap frees a slot for t4 at the next hand-off (the CLI and the reconcile run one).
    await fair.setSettings("a", { maxRunning: 3 });
    expect((await fair.release("a")).wake).toEqual(["t4"]);
    expect(await fair.cappedTenants()).toEqual([]);
  });

  it("gives every held-back task back, with nothing reserved, when the cap is removed", async () => {
    const { fair } = setup();
    await fair.setSettings("a", { maxRunning: 1 });
    const { stamps } = await fair.stamp("a", ["t1", "t2", "t3"], { fair: true });
    for (const s of stamps)
      await fair.admit({ taskId: s.taskId, tenant: "a", attempt: "tok", priority: s.priority });
    await fair.setSettings("a", { maxRunning: null });
    expect((await fair.release("a")).wake).toEqual(["t2", "t3"]);
    expect((await fair.load(["a"]))[0]).toMatchObject({ running: 1, maxRunning: null });
  });

  it("reclaims the slot of an attempt whose lease ran out (its worker died), and renews live ones", async () => {
    const clock = manualClock();
    const { fair } = setup({ slotLeaseMs: 1_000, _internal: { clock } });
    await fair.setSettings("a", { maxRunning: 1 });
    const dead = await fair.admit({ taskId: "t1", tenant: "a", attempt: "w1", priority: 1 });
    expect(dead.admitted).toBe(true);
    clock.t += 600;
    expect((await fair.admit({ taskId: "t2", tenant: "a", attempt: "w2", priority: 2 })).admitted).toBe(
      false,
    );
    clock.t += 600;
    // t1's lease (1 s) is over: the slot is free again.
    const live = await fair.admit({ taskId: "t2", tenant: "a", attempt: "w2b", priority: 2 });
    expect(live.admitted).toBe(true);
    clock.t += 900;
    await fair.renew([live.slot]);
    clock.t += 900;
    expect((await fair.admit({ taskId: "t3", tenant: "a", attempt: "w3", priority: 3 })).admitted).toBe(
      false,
    );
    expect((await fair.load(["a"]))[0]?.running).toBe(1);
  });

  it("hands a slot reserved for a cancelled task on to the next one held back", async () => {
    const { fair } = setup();
    await fair.setSettings("a", { maxRunning: 1 });
    const { stamps } = await fair.stamp("a", ["t1", "t2", "t3"], { fair: true });
    const first = await fair.admit({
      taskId: "t1",
      tenant: "a",
      attempt: "w",
      priority: stamps[0]?.priority ?? 1,
    });
    for (const s of stamps.slice(1))
      await fair.admit({ taskId: s.taskId, tenant: "a", attempt: "w", priority: s.priority });
    expect((await fair.release("a", first.slot)).wake).toEqual(["t2"]);
    // t2 is cancelled while on its way to a worker: its reserved slot goes to t3.
    expect(await fair.forget("a", "t2")).toEqual(["t3"]);
    expect((await fair.load(["a"]))[0]).toMatchObject({ running: 1, waiting: 1 });
  });

  it("refuses bad settings with INVALID_INPUT and keeps the old ones", async () => {
    const { fair } = setup();
    await fair.setSettings("a", { maxRunning: 4, weight: 2 });
    for (const bad of [
      { maxRunning: 0 },
      { maxRunning: 1.5 },
      { weight: 0 },
      { weight: 5000 },
      { weight: Number.NaN },
    ]) {
      await expect(fair.setSettings("a", bad)).rejects.toMatchObject({ code: "INVALID_INPUT" });
    }
    await expect(fair.setSettings("a:b", { weight: 1 })).rejects.toMatchObject({ code: "INVALID_INPUT" });
    expect(await fair.settings("a")).toEqual({ maxRunning: 4, weight: 2 });
    expect(await fair.settings("never-configured")).toEqual({ maxRunning: null, weight: 1 });
    expect(await fair.tenants()).toEqual(["a"]);
  });
});

describe("FairShare clock rebase", () => {
  it("moves every held priority down by the same amount, keeping BullMQ's order, and new tasks land in the same frame", async () => {
    const { fair, queue, submit, order, conn, prefix } = setup({ _internal: { rebaseAt: 10 } });
    const a = await submit("a", 30);
    const b = await submit("b", 30);
    // A parked job holds its priority in its hash and re-enters the prioritized set with it.
    await queue.add("agent.run", { tenant: "c" }, { jobId: "parked", priority: 25, delay: 60_000 });
    const before = await order();
    // Workers take a's and b's first 12 and finish them (virtual time reaches 11).
    let due = false;
    for (const id of before.slice(0, 24)) {
      const job = await queue.getJob(id);
      const tenant = String(job?.data.tenant);
      const admission = await fair.admit({ taskId: id, tenant, attempt: "w", priority: job?.priority ?? 0 });
      await conn.zrem(`${prefix}:tasks:prioritized`, id);
      const released = await fair.release(tenant, admission.slot);
      due ||= released.rebaseDue;
    }
    expect(due).toBe(true);
    const remaining = before.slice(24);
    expect(await fair.rebase()).toBe(11);
    expect(await fair.base()).toBe(11 * VIRTUAL_UNIT);
    expect(await order()).toEqual(remaining);
    expect((await queue.getJob(remaining[0] as string))?.priority).toBe(2);
    expect((await queue.getJob("parked"))?.priority).toBe(14);
    // Not due again until the clock drifts once more.
    expect(await fair.rebase()).toBe(0);
    // A late tenant lands beside the virtual time, not at the back: ahead of a's and b's last tasks.
    const [late] = await submit("late", 1);
    const after = await order();
    expect(after[0]).toBe(late);
    expect(after.slice(1)).toEqual(remaining);
    expect(a.concat(b).every((id) => after.includes(id) || !remaining.includes(id))).toBe(true);
  });
});
