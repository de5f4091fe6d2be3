import { describe, expect, it } from "vitest";
import { closest, didYouMean, editDistance, escapeControls, shown } from "./suggest.js";

const names = (...ns: string[]) => ns.map((n) => ({ name: n, label: n }));

describe("did you mean", () => {
  it("counts a swap of two neighbouring letters as one edit", () => {
    expect(editDistance("stauts", "status")).toBe(1);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("kitten", "sitting")).toBe(3);
  });

  it("suggests only close names: one edit for short names, two for longer ones, or a prefix of 3+", () => {
    expect(closest("kyes", names("keys", "audit"))).toEqual(["keys"]);
    expect(closest("kes", names("keys"))).toEqual(["keys"]);
    expect(closest("kxyz", names("keys"))).toEqual([]);
    expect(closest("approv", names("approvals", "audit"))).toEqual(["approvals"]);
    expect(closest("ap", names("approvals"))).toEqual([]);
    expect(closest("STATUS", names("status"))).toEqual(["status"]);
  });

  it("lists every name at the best distance, at most three", () => {
    expect(closest("hat", names("cat", "hat", "mat"))).toEqual(["hat"]);
    expect(closest("bxt", names("cat", "hat", "mat", "rat"))).toEqual([]);
    expect(closest("xat", names("cat", "hat", "mat", "rat"))).toEqual(["cat", "hat", "mat"]);
    expect(didYouMean(["a", "b", "c"])).toBe('; did you mean "a", "b" or "c"?');
    expect(didYouMean([])).toBe("");
  });

  it("gives no suggestion for a huge word rather than spending its length squared", () => {
    expect(closest("s".repeat(10_000), names("status"))).toEqual([]);
  });

  it("shows typed words with control characters escaped and cut to a readable length", () => {
    expect(escapeControls("a\u001b[31mb\u009bc\u202ed")).toBe("a\\u{1b}[31mb\\u{9b}c\\u{202e}d");
    expect(shown("x".repeat(200))).toBe(`"${"x".repeat(80)}…"`);
  });
});
