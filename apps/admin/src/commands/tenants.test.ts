import { describe, expect, it } from "vitest";
import { FairShare, type TenantLoad } from "@agentry/runtime";
import { useTestRedis } from "@agentry/testkit";
import { runAgentry } from "../testing/run-agentry.js";

const redis = useTestRedis("admin-tenants");

function setup() {
  const prefix = redis.freshPrefix();
  const env = { REDIS_URL: redis.url, AGENTRY_PREFIX: prefix };
  return { env, fair: new FairShare({ redis: redis.client(), prefix }) };
}

describe("agentry tenants", () => {
  it("caps and weights a tenant, keeps what a later call does not give, and shows it back", async () => {
    const { env, fair } = setup();
    const set = await runAgentry(
      ["tenants", "set", "acme", "--max-running", "5", "--weight", "2.5", "--json"],
      env,
    );
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual([
      { tenant: "acme", maxRunning: 5, weight: 2.5, running: 0, waiting: 0 },
    ]);
    expect(set.stderr).toBe("settings for tenant acme set\n");
    expect(await fair.settings("acme")).toEqual({ maxRunning: 5, weight: 2.5 });

    expect((await runAgentry(["tenants", "set", "acme", "--weight", "1"], env)).code).toBe(0);
    expect(await fair.settings("acme")).toEqual({ maxRunning: 5, weight: 1 });
    expect((await runAgentry(["tenants", "set", "acme", "--max-running", "none"], env)).code).toBe(0);
    expect(await fair.settings("acme")).toEqual({ maxRunning: null, weight: 1 });
  });

  it("shows every known tenant with its running and waiting tasks, or one tenant", async () => {
    const { env, fair } = setup();
    await fair.setSettings("acme", { maxRunning: 1 });
    const { stamps } = await fair.stamp("acme", ["t1", "t2", "t3"], { fair: true });
    for (const s of stamps.slice(0, 2))
      await fair.admit({ taskId: s.taskId, tenant: "acme", attempt: "w", priority: s.priority });
    await fair.stamp("globex", ["g1"], { fair: true });

    const all = await runAgentry(["tenants", "show", "--json"], env);
    expect(all.code).toBe(0);
    expect(JSON.parse(all.stdout) as TenantLoad[]).toEqual([
      { tenant: "acme", maxRunning: 1, weight: 1, running: 1, waiting: 2 },
      { tenant: "globex", maxRunning: null, weight: 1, running: 0, waiting: 1 },
    ]);
    const table = await runAgentry(["tenants", "show"], env);
    expect(table.stdout).toMatch(/^TENANT\s+MAX RUNNING\s+WEIGHT\s+RUNNING\s+WAITING\n/);
    expect(table.stdout).toMatch(/\nacme\s+1\s+1\s+1\s+2\n/);
    expect(table.stdout).toMatch(/\nglobex\s+none\s+1\s+0\s+1\n/);

    const one = await runAgentry(["tenants", "show", "globex", "--json"], env);
    expect(JSON.parse(one.stdout)).toEqual([
      { tenant: "globex", maxRunning: null, weight: 1, running: 0, waiting: 1 },
    ]);
    // A tenant nobody configured or used shows its defaults.
    const fresh = await runAgentry(["tenants", "show", "initech", "--json"], env);
    expect(JSON.parse(fresh.stdout)).toEqual([
      { tenant: "initech", maxRunning: null, weight: 1, running: 0, waiting: 0 },
    ]);
  });

  it("raises a cap without waking anything itself: capped tasks stay for the workers' reconcile to hand slots to", async () => {
    const { env, fair } = setup();
    await fair.setSettings("acme", { maxRunning: 1 });
    const { stamps } = await fair.stamp("acme", ["t1", "t2", "t3"], { fair: true });
    for (const s of stamps)
      await fair.admit({ taskId: s.taskId, tenant: "acme", attempt: "w", priority: s.priority });
    const set = await runAgentry(["tenants", "set", "acme", "--max-running", "3", "--json"], env);
    expect(JSON.parse(set.stdout)).toEqual([
      { tenant: "acme", maxRunning: 3, weight: 1, running: 1, waiting: 2 },
    ]);
    // What a worker's reconcile then does: two slots for t2 and t3, oldest first.
    expect(await fair.cappedTenants()).toEqual(["acme"]);
    expect((await fair.release("acme")).wake).toEqual(["t2", "t3"]);
  });

  it("refuses bad tenants, caps and weights as usage errors, changing nothing", async () => {
    const { env, fair } = setup();
    for (const args of [
      ["set", "acme"],
      ["set", "--weight", "2"],
      ["set", "a:b", "--weight", "2"],
      ["set", "acme", "--max-running", "0"],
      ["set", "acme", "--max-running", "2.5"],
      ["set", "acme", "--max-running", "unlimited"],
      ["set", "acme", "--weight", "0"],
      ["set", "acme", "--weight", "1001"],
      ["set", "acme", "--weight", "-1"],
      ["set", "acme", "--max-running", "2000000"],
      ["show", "a", "b"],
      ["show", "{acme}"],
    ]) {
      const run = await runAgentry(["tenants", ...args], env);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stdout, args.join(" ")).toBe("");
      expect(run.stderr, args.join(" ")).toMatch(/^agentry: [^\n]+\n$/);
    }
    expect(await fair.tenants()).toEqual([]);
  });
});
