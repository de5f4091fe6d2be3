import { describe, expect, it } from "vitest";
import { canonicalJson, canonicalMembers, joinCanonicalMembers } from "./canonical-json.js";

describe("canonicalMembers", () => {
  it("joined with added members, gives the same bytes as canonicalJson of the whole object", () => {
    const body = { type: "decision", taskId: "t1", data: { z: [1, { b: "x", a: null }], a: "é\n" }, skipped: undefined, ts: "2026-01-01T00:00:00.000Z" };
    const members = canonicalMembers(body);
    members.set("seq", String(42));
    members.set("prevHash", JSON.stringify("abc"));
    expect(joinCanonicalMembers(members)).toBe(canonicalJson({ ...body, seq: 42, prevHash: "abc" }));
  });

  it("rejects a value canonical JSON cannot encode", () => {
    expect(() => canonicalMembers({ data: { n: Number.NaN } })).toThrow(TypeError);
  });
});
