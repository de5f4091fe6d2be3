import { AgentryError } from "@agentry/core";
import { describe, expect, it } from "vitest";
import { canonicalJson, canonicalMembers, joinCanonicalMembers } from "./canonical-json.js";

describe("canonicalMembers", () => {
  it("joined with added members, gives the same bytes as canonicalJson of the whole object", () => {
    const body = {
      type: "decision",
      taskId: "t1",
      data: { z: [1, { b: "x", a: null }], a: "é\n" },
      skipped: undefined,
      ts: "2026-01-01T00:00:00.000Z",
    };
    const members = canonicalMembers(body);
    members.set("seq", String(42));
    members.set("prevHash", JSON.stringify("abc"));
    expect(joinCanonicalMembers(members)).toBe(canonicalJson({ ...body, seq: 42, prevHash: "abc" }));
  });

  it("rejects a value canonical JSON cannot encode", () => {
    const err = (() => {
      try {
        return canonicalMembers({ data: { n: Number.NaN } });
      } catch (e) {
        return e;
      }
    })();
    expect(AgentryError.isInstance(err) && err.code).toBe("INVALID_INPUT");
    expect(() => canonicalJson({ f: () => 1 })).toThrow(/cannot encode function at \$\.f/);
  });
});

describe("canonicalJson key order", () => {
  it("sorts keys by UTF-16 code units: a surrogate pair (U+1F600) sorts before U+FB01, unlike code-point order", () => {
    expect(canonicalJson({ "\uFB01": 1, "\u{1F600}": 2, b: 3, a: 4 })).toBe(
      '{"a":4,"b":3,"\u{1F600}":2,"\uFB01":1}',
    );
  });
});
