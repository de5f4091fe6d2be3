import { describe, expect, it } from "vitest";
import { redactSecretText } from "./redact-text.js";

describe("redactSecretText", () => {
  it("replaces credentials written into sentences and keeps the rest", () => {
    const text = [
      "I will call the API with sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123 now.",
      "Header: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
      "aws AKIAIOSFODNN7EXAMPLE and ghp_abcdefghijklmnopqrstuvwxyz0123456789",
      'config password = "hunter2 is long" and api_key: abc123',
      "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
    ].join("\n");
    const out = redactSecretText(text);
    for (const secret of [
      "sk-ant-api03",
      "eyJhbGci",
      "AKIAIOSFODNN7EXAMPLE",
      "ghp_abc",
      "hunter2",
      "abc123",
      "MIIB",
    ])
      expect(out).not.toContain(secret);
    expect(out).toContain("I will call the API with [redacted] now.");
    expect(out).toContain("password = [redacted]");
    expect(redactSecretText("The weather in Paris is clear, 18 °C.")).toBe(
      "The weather in Paris is clear, 18 °C.",
    );
  });
});
