import { describe, expect, it } from "vitest";
import { durationMs, parseEnv } from "../index.js";

describe("parseEnv", () => {
  it("applies defaults and picks scripted without an API key", () => {
    const env = parseEnv({});
    expect(env.REDIS_URL).toBe("redis://127.0.0.1:6379");
    expect(env.AGENTRY_PREFIX).toBe("agentry");
    expect(env.AGENTRY_LLM).toBe("scripted");
    expect(env.AGENTRY_CONCURRENCY).toBe(4);
    expect(env.AGENTRY_FAIR_SHARE).toBe("on");
  });

  it("turns fair share off only with the word off", () => {
    expect(parseEnv({ AGENTRY_FAIR_SHARE: "off" }).AGENTRY_FAIR_SHARE).toBe("off");
    expect(parseEnv({ AGENTRY_FAIR_SHARE: " " }).AGENTRY_FAIR_SHARE).toBe("on");
    for (const odd of ["0", "false", "fifo", "OFF"])
      expect(() => parseEnv({ AGENTRY_FAIR_SHARE: odd })).toThrowError(/AGENTRY_FAIR_SHARE/);
  });

  it("picks anthropic when a key is set", () => {
    expect(parseEnv({ ANTHROPIC_API_KEY: "sk-test" }).AGENTRY_LLM).toBe("anthropic");
  });

  it("names every bad variable", () => {
    expect(() => parseEnv({ AGENTRY_CONCURRENCY: "zero", LOG_LEVEL: "loud" })).toThrowError(
      /AGENTRY_CONCURRENCY.*LOG_LEVEL|LOG_LEVEL.*AGENTRY_CONCURRENCY/,
    );
  });

  it("takes the audit key and retired keys (comma separated), refusing short ones", () => {
    const key = "k".repeat(32);
    expect(
      parseEnv({
        AGENTRY_AUDIT_KEY: key,
        AGENTRY_AUDIT_PREVIOUS_KEYS: ` ${"a".repeat(32)}, ${"b".repeat(40)} ,`,
      }),
    ).toMatchObject({
      AGENTRY_AUDIT_KEY: key,
      AGENTRY_AUDIT_PREVIOUS_KEYS: ["a".repeat(32), "b".repeat(40)],
    });
    expect(parseEnv({}).AGENTRY_AUDIT_PREVIOUS_KEYS).toEqual([]);
    expect(() => parseEnv({ AGENTRY_AUDIT_KEY: "short" })).toThrowError(/AGENTRY_AUDIT_KEY/);
    expect(() => parseEnv({ AGENTRY_AUDIT_PREVIOUS_KEYS: `${key},short` })).toThrowError(
      /AGENTRY_AUDIT_PREVIOUS_KEYS/,
    );
  });
});

describe("durationMs", () => {
  it("parses units", () => {
    expect(durationMs("30s")).toBe(30_000);
    expect(durationMs("5m")).toBe(300_000);
    expect(durationMs(250)).toBe(250);
    expect(() => durationMs("soon")).toThrow(/Bad duration/);
  });
});
