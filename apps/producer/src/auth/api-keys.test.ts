import { describe, expect, it } from "vitest";
import { ApiKeyAuthenticator, parseApiKeys } from "./api-keys.js";

describe("parseApiKeys", () => {
  it("reads key=tenant entries, comma- or line-separated, with +admin and comments", () => {
    const keys = parseApiKeys("k1=acme, k2=globex+admin\n# ops key\nk3=ops.team # trailing comment\n");
    expect([...keys.keys()]).toEqual(["k1", "k2", "k3"]);
    expect(keys.get("k1")).toMatchObject({ tenant: "acme", admin: false });
    expect(keys.get("k2")).toMatchObject({ tenant: "globex", admin: true });
    expect(keys.get("k3")?.tenant).toBe("ops.team");
    // The default name never contains the key.
    expect(keys.get("k1")?.name).toMatch(/^acme#[0-9a-f]{8}$/);
  });

  it("reads JSON objects and arrays", () => {
    expect(
      parseApiKeys('{"k1": "acme", "k2": {"tenant": "globex", "name": "ci", "admin": true}}').get("k2"),
    ).toEqual({
      tenant: "globex",
      name: "ci",
      admin: true,
    });
    expect(parseApiKeys('[{"key": "k1", "tenant": "acme"}]').get("k1")).toMatchObject({
      tenant: "acme",
      admin: false,
    });
  });

  it("refuses bad entries with INVALID_CONFIG and never echoes a key", () => {
    const secret = "sk-very-secret";
    // A ':' in a tenant id would let one tenant's qualified ids (tenant:<t>:session:<s>) spell another's.
    for (const text of [
      `${secret}`,
      `${secret}=bad tenant`,
      `${secret}=acme,${secret}=globex`,
      '{"k": 42}',
      "[{",
      `=acme`,
      `${secret}=acme:eu`,
    ]) {
      let caught: unknown;
      try {
        parseApiKeys(text, "AGENTRY_API_KEYS");
      } catch (err) {
        caught = err;
      }
      expect(caught).toMatchObject({ code: "INVALID_CONFIG" });
      expect((caught as Error).message).not.toContain(secret);
    }
  });
});

describe("ApiKeyAuthenticator", () => {
  it("authenticates known keys only", () => {
    const auth = new ApiKeyAuthenticator(parseApiKeys("k1=acme,k2=ops+admin"));
    expect(auth.authenticate("k1")).toEqual({
      tenant: "acme",
      name: expect.any(String) as string,
      admin: false,
    });
    expect(auth.authenticate("k2")?.admin).toBe(true);
    expect(auth.authenticate("k3")).toBeUndefined();
    expect(auth.authenticate(undefined)).toBeUndefined();
    expect(auth.authenticate("")).toBeUndefined();
  });
});
