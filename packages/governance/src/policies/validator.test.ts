import { describe, expect, it } from "vitest";
import { SafetyValidator } from "./validator.js";
import type { Verdict } from "@agentry/core";
import type { Action, Policy } from "./types.js";

const action: Action = { tool: "t", input: {}, taskId: "task1", tenant: "acme", userId: "u", sessionId: "s" };
const fixed = (name: string, verdict: Verdict): Policy => ({ name, evaluate: () => verdict });
const approval = (approvers: string[], quorum: number, ttlMs: number, reason = "r"): Verdict => ({
  type: "require_approval",
  approvers,
  quorum,
  ttlMs,
  reason,
});

describe("SafetyValidator", () => {
  it("allows when every policy allows", async () => {
    const v = new SafetyValidator({
      policies: [fixed("a", { type: "allow" }), fixed("b", { type: "allow" })],
    });
    const r = await v.validate(action);
    expect(r.verdict).toEqual({ type: "allow" });
    expect(r.decidedBy).toBeUndefined();
    expect(r.verdicts.map((x) => x.policy)).toEqual(["a", "b"]);
  });

  it("deny beats require_approval beats allow", async () => {
    const v = new SafetyValidator({
      policies: [
        fixed("a", approval(["alice"], 1, 1000)),
        fixed("b", { type: "deny", reason: "no" }),
        fixed("c", { type: "allow" }),
      ],
    });
    expect(await v.validate(action)).toMatchObject({
      verdict: { type: "deny", reason: "no" },
      decidedBy: "b",
    });
    const w = new SafetyValidator({
      policies: [fixed("c", { type: "allow" }), fixed("a", approval(["alice"], 1, 1000))],
    });
    expect(await w.validate(action)).toMatchObject({ verdict: { type: "require_approval" }, decidedBy: "a" });
  });

  it("merges approvals: union of approvers, highest quorum, shortest ttl", async () => {
    const v = new SafetyValidator({
      policies: [
        fixed("a", approval(["alice", "bob"], 1, 60_000, "x")),
        fixed("b", approval(["bob", "carol"], 2, 10_000, "y")),
      ],
    });
    const r = await v.validate(action);
    expect(r.verdict).toEqual({
      type: "require_approval",
      approvers: ["alice", "bob", "carol"],
      quorum: 2,
      ttlMs: 10_000,
      reason: "x; y",
    });
  });

  it("a throwing policy denies and names itself (fail closed)", async () => {
    const boom: Policy = {
      name: "boom",
      evaluate: () => {
        throw new Error("kaput");
      },
    };
    const r = await new SafetyValidator({ policies: [fixed("ok", { type: "allow" }), boom] }).validate(
      action,
    );
    expect(r.verdict).toEqual({ type: "deny", reason: "policy boom failed: kaput" });
    expect(r.decidedBy).toBe("boom");
    expect(r.verdicts[1]?.error).toBe("kaput");
  });

  it("a policy that never answers denies after the timeout", async () => {
    const slow: Policy = { name: "slow", evaluate: () => new Promise<Verdict>(() => {}) };
    const r = await new SafetyValidator({ policies: [slow], timeoutMs: 20 }).validate(action);
    expect(r.verdict.type).toBe("deny");
    expect(r.verdict.type === "deny" && r.verdict.reason).toMatch(/^policy slow failed: timed out/);
  });

  it("an invalid verdict denies", async () => {
    const bad: Policy = {
      name: "bad",
      evaluate: () => ({ type: "require_approval", approvers: [], quorum: 0, ttlMs: 1, reason: "" }),
    };
    const r = await new SafetyValidator({ policies: [bad] }).validate(action);
    expect(r.verdict.type === "deny" && r.verdict.reason).toMatch(
      /^policy bad failed: returned an invalid verdict/,
    );
  });

  it("refuses duplicate policy names", () => {
    expect(
      () => new SafetyValidator({ policies: [fixed("a", { type: "allow" }), fixed("a", { type: "allow" })] }),
    ).toThrow(/Duplicate/);
  });
});
