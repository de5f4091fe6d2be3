import { describe, expect, it } from "vitest";
import { AgentryError, ERROR_CODES } from "@agentry/core";
import { httpErrorOf, httpStatusOf } from "./http-error.js";

describe("httpErrorOf", () => {
  it("gives every error code a status", () => {
    for (const code of ERROR_CODES) expect(httpStatusOf(code)).toBeGreaterThanOrEqual(400);
  });

  it("maps typed errors with their fields and Retry-After", () => {
    const invalid = httpErrorOf(
      new AgentryError("INVALID_INPUT", "bad", {
        details: { fields: [{ path: "prompt", message: "empty" }] },
      }),
    );
    expect(invalid).toMatchObject({
      status: 400,
      body: { error: { code: "INVALID_INPUT", fields: [{ path: "prompt", message: "empty" }] } },
    });
    const down = httpErrorOf(new AgentryError("REDIS_UNAVAILABLE", "down"));
    expect(down).toMatchObject({ status: 503, headers: { "retry-after": "1" } });
    const limited = httpErrorOf(new AgentryError("PROVIDER_RATE_LIMITED", "429", { retryAfterMs: 2_500 }));
    expect(limited).toMatchObject({
      status: 429,
      headers: { "retry-after": "3" },
      body: { error: { retryAfterMs: 2_500 } },
    });
  });

  it("hides anything unexpected behind a generic 500", () => {
    const err = new Error("connection string redis://user:secret@host");
    const mapped = httpErrorOf(err);
    expect(mapped).toEqual({
      status: 500,
      headers: {},
      body: { error: { code: "INTERNAL", message: "Internal error" } },
    });
    expect(JSON.stringify(mapped)).not.toContain("secret");
  });
});
