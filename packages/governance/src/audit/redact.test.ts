import { describe, expect, it } from "vitest";
import { REDACTED, redactSecrets } from "./redact.js";

describe("redactSecrets without dotted paths", () => {
  it("redacts credential-named keys at any depth, in objects and arrays, and leaves the input alone", () => {
    const input = {
      type: "decision",
      data: {
        headers: { Authorization: "Bearer x", accept: "json" },
        calls: [{ input: { api_key: "k", city: "Paris" } }, "plain", null, [{ password: "p" }]],
        maxTokens: 1024,
        token: undefined,
      },
    };
    const copy = structuredClone(input);
    expect(redactSecrets(input)).toEqual({
      type: "decision",
      data: {
        headers: { Authorization: REDACTED, accept: "json" },
        calls: [{ input: { api_key: REDACTED, city: "Paris" } }, "plain", null, [{ password: REDACTED }]],
        maxTokens: 1024,
        token: undefined,
      },
    });
    expect(input).toEqual(copy);
  });
});
