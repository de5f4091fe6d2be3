import { describe, expect, it } from "vitest";
import { describeProgress } from "./submit.js";

describe("describeProgress", () => {
  it("says in words what a parked task waits for, and names a reason it does not know", () => {
    expect(describeProgress({ step: 2, phase: "parked", reason: "redis_unavailable" })).toBe(
      "step 2: waiting (Redis is unavailable; it tries again)",
    );
    expect(describeProgress({ step: 0, phase: "parked", reason: "session_busy" })).toBe(
      "step 0: waiting (another task of this session is running)",
    );
    expect(describeProgress({ step: 1, phase: "parked", reason: "something_new" })).toBe(
      "step 1: waiting (something_new)",
    );
    expect(describeProgress({ step: 1, phase: "parked" })).toBe("step 1: waiting (parked)");
  });
});
