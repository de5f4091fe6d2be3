import { describe, expect, it } from "vitest";
import { DEV_API_KEY, NO_API_KEYS_MESSAGE, loadApiKeys, parseProducerEnv } from "./producer-env.js";

describe("parseProducerEnv", () => {
  it("applies defaults and parses the producer's variables", () => {
    expect(parseProducerEnv({})).toMatchObject({
      PORT: 8080,
      HOST: "0.0.0.0",
      AGENTRY_PREFIX: "agentry",
      AGENTRY_BODY_LIMIT_BYTES: 1_048_576,
    });
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
  it("refuses to run without keys (an empty variable or a file of comments counts as none) unless the insecure flag is set", () => {
    const files: Record<string, string> = { "/empty": "", "/comments": "# no keys yet\n\n" };
    const read = (p: string) => files[p] as string;
    for (const env of [
      {},
      { AGENTRY_API_KEYS: "" },
      { AGENTRY_API_KEYS: " , ,# none" },
      { AGENTRY_API_KEYS_FILE: "/empty" },
      { AGENTRY_API_KEYS_FILE: "/comments", AGENTRY_API_KEYS: "\n" },
    ]) {
      expect(() => loadApiKeys(env, read), JSON.stringify(env)).toThrow(
        expect.objectContaining({ code: "INVALID_CONFIG", message: NO_API_KEYS_MESSAGE }),
      );
    }
    const loaded = loadApiKeys(parseProducerEnv({ AGENTRY_INSECURE_DEV_KEY: "1" }));
    expect(loaded.devDefault).toBe(true);
    expect([...loaded.keys]).toEqual([[DEV_API_KEY, { tenant: "default", name: DEV_API_KEY, admin: true }]]);
    // With real keys the flag changes nothing: dev-key is not added.
    const real = loadApiKeys(
      parseProducerEnv({ AGENTRY_INSECURE_DEV_KEY: "true", AGENTRY_API_KEYS: "k=acme" }),
    );
    expect(real.devDefault).toBe(false);
    expect([...real.keys.keys()]).toEqual(["k"]);
  });

  it("refuses the well-known dev-key configured by hand unless the insecure flag is set", () => {
    expect(() => loadApiKeys({ AGENTRY_API_KEYS: "k=acme,dev-key=default+admin" })).toThrow(
      /well-known key `dev-key`.*AGENTRY_INSECURE_DEV_KEY=1/,
    );
    expect(
      loadApiKeys({ AGENTRY_API_KEYS: "dev-key=default+admin", AGENTRY_INSECURE_DEV_KEY: true }).keys.has(
        DEV_API_KEY,
      ),
    ).toBe(true);
  });

  it("reads the insecure flag from a closed set of spellings", () => {
    expect(parseProducerEnv({}).AGENTRY_INSECURE_DEV_KEY).toBe(false);
    expect(parseProducerEnv({ AGENTRY_INSECURE_DEV_KEY: "0" }).AGENTRY_INSECURE_DEV_KEY).toBe(false);
    expect(parseProducerEnv({ AGENTRY_INSECURE_DEV_KEY: "false" }).AGENTRY_INSECURE_DEV_KEY).toBe(false);
    expect(parseProducerEnv({ AGENTRY_INSECURE_DEV_KEY: "1" }).AGENTRY_INSECURE_DEV_KEY).toBe(true);
    for (const odd of ["yes", "on", "TRUE", "2"])
      expect(() => parseProducerEnv({ AGENTRY_INSECURE_DEV_KEY: odd })).toThrow(/AGENTRY_INSECURE_DEV_KEY/);
  });

  it("merges the file and the variable, and refuses a key configured twice", () => {
    const files: Record<string, string> = { "/keys": '{"f1": "acme"}' };
    const loaded = loadApiKeys(
      { AGENTRY_API_KEYS_FILE: "/keys", AGENTRY_API_KEYS: "e1=globex" },
      (p) => files[p] as string,
    );
    expect(loaded.devDefault).toBe(false);
    expect([...loaded.keys.keys()]).toEqual(["f1", "e1"]);
    expect(() =>
      loadApiKeys(
        { AGENTRY_API_KEYS_FILE: "/keys", AGENTRY_API_KEYS: "f1=globex" },
        (p) => files[p] as string,
      ),
    ).toThrow(/twice/);
    expect(() =>
      loadApiKeys({ AGENTRY_API_KEYS_FILE: "/missing" }, () => {
        throw new Error("ENOENT");
      }),
    ).toThrow(/cannot read/);
  });
});
