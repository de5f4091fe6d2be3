import { describe, expect, it } from "vitest";
import { DEV_API_KEY, loadApiKeys, parseProducerEnv } from "./producer-env.js";

describe("parseProducerEnv", () => {
  it("applies defaults and parses the producer's variables", () => {
    expect(parseProducerEnv({})).toMatchObject({ PORT: 8080, HOST: "0.0.0.0", AGENTRY_PREFIX: "agentry", AGENTRY_BODY_LIMIT_BYTES: 1_048_576 });
    expect(parseProducerEnv({ PORT: "9000", HOST: "127.0.0.1", AGENTRY_API_KEYS: "k=acme" })).toMatchObject({
      PORT: 9000,
      HOST: "127.0.0.1",
      AGENTRY_API_KEYS: "k=acme",
    });
  });

  it("names a bad variable", () => {
    expect(() => parseProducerEnv({ PORT: "eighty" })).toThrow(/PORT/);
  });
});

describe("loadApiKeys", () => {
  it("falls back to the development key when nothing is configured", () => {
    const loaded = loadApiKeys({});
    expect(loaded.devDefault).toBe(true);
    expect([...loaded.keys]).toEqual([[DEV_API_KEY, { tenant: "default", name: DEV_API_KEY, admin: true }]]);
  });

  it("merges the file and the variable, and refuses a key configured twice", () => {
    const files: Record<string, string> = { "/keys": '{"f1": "acme"}' };
    const loaded = loadApiKeys({ AGENTRY_API_KEYS_FILE: "/keys", AGENTRY_API_KEYS: "e1=globex" }, (p) => files[p] as string);
    expect(loaded.devDefault).toBe(false);
    expect([...loaded.keys.keys()]).toEqual(["f1", "e1"]);
    expect(() => loadApiKeys({ AGENTRY_API_KEYS_FILE: "/keys", AGENTRY_API_KEYS: "f1=globex" }, (p) => files[p] as string)).toThrow(/twice/);
    expect(() =>
      loadApiKeys({ AGENTRY_API_KEYS_FILE: "/missing" }, () => {
        throw new Error("ENOENT");
      }),
    ).toThrow(/cannot read/);
  });
});
