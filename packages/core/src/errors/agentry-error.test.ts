import { describe, expect, it } from "vitest";
import { AgentryError, agentryErrorDataSchema, isAgentryError } from "../index.js";

describe("AgentryError", () => {
  it("defaults category and retryable from the code", () => {
    const e = new AgentryError("PROVIDER_RATE_LIMITED", "slow down", { retryAfterMs: 1500 });
    expect(e.category).toBe("provider");
    expect(e.retryable).toBe(true);
    expect(new AgentryError("POLICY_DENIED", "no").retryable).toBe(false);
  });

  it("is recognised by brand, not by class identity", () => {
    const e = new AgentryError("BUDGET_EXCEEDED", "over");
    const copy = Object.assign(Object.create(Error.prototype), { [Symbol.for("agentry.error")]: true });
    expect(AgentryError.isInstance(e)).toBe(true);
    expect(AgentryError.isInstance(copy)).toBe(true);
    expect(AgentryError.isInstance(new Error("x"))).toBe(false);
    expect(isAgentryError(e, "BUDGET_EXCEEDED")).toBe(true);
    expect(isAgentryError(e, "POLICY_DENIED")).toBe(false);
  });

  it("round-trips through plain data", () => {
    const e = new AgentryError("BUDGET_EXCEEDED", "tenant:a over", { details: { scope: "tenant:a" } });
    const data = agentryErrorDataSchema.parse(JSON.parse(JSON.stringify(e.toData())));
    const back = AgentryError.fromData(data);
    expect(back.code).toBe("BUDGET_EXCEEDED");
    expect(back.details).toEqual({ scope: "tenant:a" });
    expect(back.message).toBe("tenant:a over");
  });

  it("wraps foreign errors as INTERNAL with the cause kept", () => {
    const cause = new TypeError("boom");
    const e = AgentryError.from(cause);
    expect(e.code).toBe("INTERNAL");
    expect(e.cause).toBe(cause);
  });
});
