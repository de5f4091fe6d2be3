import { describe, expect, it } from "vitest";
import { AgentryError } from "./errors/agentry-error.js";
import { isTenantId, tenantOwnedId, tenantScope } from "./tenancy.js";

describe("tenant-qualified ids", () => {
  it("names a tenant's resource as tenant:<t>:<kind>:<id>", () => {
    expect(tenantOwnedId("acme", "session", "s1")).toBe("tenant:acme:session:s1");
    expect(tenantOwnedId("acme", "user", "bob@example.com")).toBe("tenant:acme:user:bob@example.com");
    expect(tenantScope("acme")).toBe("tenant:acme");
  });

  it("is injective: a ':' cannot move between tenant and id", () => {
    // The only way "a" + "b:c" and "a:b" + "c" could meet is a tenant containing ':'; it is refused.
    expect(tenantOwnedId("a", "session", "b:c")).toBe("tenant:a:session:b:c");
    expect(() => tenantOwnedId("a:b", "session", "c")).toThrow(AgentryError);
    expect(() => tenantScope("a:session:b")).toThrow(/no ':'/);
    // Different kinds never meet either, even when an id spells another kind.
    expect(tenantOwnedId("a", "user", "x")).not.toBe(tenantOwnedId("a", "session", "x"));
    expect(tenantOwnedId("a", "user", "session:x")).not.toBe(tenantOwnedId("a", "session", "x"));
  });

  it("refuses odd spellings of a tenant and empty ids with INVALID_INPUT", () => {
    for (const bad of ["", "a b", "a\nb", "{acme}", "acme:", "x".repeat(201), "é"]) {
      expect(isTenantId(bad)).toBe(false);
      expect(() => tenantScope(bad)).toThrow(expect.objectContaining({ code: "INVALID_INPUT" }));
    }
    expect(() => tenantOwnedId("acme", "session", "")).toThrow(
      expect.objectContaining({ code: "INVALID_INPUT" }),
    );
    expect(() => tenantOwnedId("acme", "team" as "user", "x")).toThrow(
      expect.objectContaining({ code: "INVALID_INPUT" }),
    );
    expect(isTenantId("acme-corp_1.eu@x")).toBe(true);
  });
});
