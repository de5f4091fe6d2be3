import { describe, expect, it } from "vitest";
import { StreamedText } from "./streamed-text.js";

describe("StreamedText", () => {
  it("appends pieces of a step in order, per step", () => {
    const t = new StreamedText();
    expect(t.apply({ step: 1, offset: 0, text: "Let me " })).toEqual({
      kind: "append",
      step: 1,
      text: "Let me ",
    });
    expect(t.apply({ step: 1, offset: 7, text: "check." })).toEqual({
      kind: "append",
      step: 1,
      text: "check.",
    });
    expect(t.apply({ step: 2, offset: 0, text: "Sunny." })).toEqual({
      kind: "append",
      step: 2,
      text: "Sunny.",
    });
    expect([t.text(1), t.text(2), t.steps()]).toEqual(["Let me check.", "Sunny.", [1, 2]]);
  });

  it("a step generated again replaces the earlier attempt's text: nothing shown while it agrees, a restart when it departs", () => {
    const t = new StreamedText();
    t.apply({ step: 3, offset: 0, text: "The answer " });
    t.apply({ step: 3, offset: 11, text: "is fort" });
    // The retried call starts over at offset 0 and says the same for a while.
    expect(t.apply({ step: 3, offset: 0, text: "The answer " })).toEqual({ kind: "none", step: 3 });
    expect(t.text(3)).toBe("The answer ");
    expect(t.apply({ step: 3, offset: 11, text: "is fort" })).toEqual({ kind: "none", step: 3 });
    expect(t.apply({ step: 3, offset: 18, text: "y-two." })).toEqual({
      kind: "append",
      step: 3,
      text: "y-two.",
    });
    expect(t.text(3)).toBe("The answer is forty-two.");
    // Another retry that departs from what was shown.
    t.apply({ step: 3, offset: 0, text: "The answer " });
    expect(t.apply({ step: 3, offset: 11, text: "was 42." })).toEqual({
      kind: "restart",
      step: 3,
      text: "The answer was 42.",
    });
    expect(t.apply({ step: 3, offset: 18, text: " Done." })).toEqual({
      kind: "append",
      step: 3,
      text: " Done.",
    });
    expect(t.text(3)).toBe("The answer was 42. Done.");
  });

  it("reports a gap when pieces before an offset never arrived (trimmed from the stream)", () => {
    const t = new StreamedText();
    expect(t.apply({ step: 1, offset: 40, text: "tail" })).toEqual({
      kind: "gap",
      step: 1,
      missing: 40,
      text: "tail",
    });
    expect(t.apply({ step: 1, offset: 44, text: " more" })).toEqual({
      kind: "append",
      step: 1,
      text: " more",
    });
  });
});
