import { describe, expect, it } from "vitest";
import type { TextDeltaEntry } from "./task-stream.js";
import { TextBatcher } from "./text-batcher.js";

/** A writer that records each batch and can be held (to show one write in flight at a time) or refuse. */
function recorder() {
  const batches: TextDeltaEntry[][] = [];
  let release: (() => void) | undefined;
  const state = { hold: false, refuse: false, fail: false, inFlight: 0, maxInFlight: 0 };
  const write = async (pieces: TextDeltaEntry[]): Promise<boolean> => {
    state.inFlight += 1;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    try {
      if (state.hold) await new Promise<void>((r) => (release = r));
      if (state.fail) throw new Error("redis went away");
      if (state.refuse) return false;
      batches.push(pieces.map((p) => ({ ...p })));
      return true;
    } finally {
      state.inFlight -= 1;
    }
  };
  return { batches, state, write, release: () => release?.() };
}

describe("TextBatcher", () => {
  it("merges contiguous pieces of a step into one entry", async () => {
    const r = recorder();
    const batcher = new TextBatcher({ write: r.write, flushMs: 20 });
    batcher.push({ step: 1, offset: 0, text: "Hello " });
    batcher.push({ step: 1, offset: 6, text: "world" });
    batcher.push({ step: 2, offset: 0, text: "Next" });
    // A step starting over is a new entry, not merged into the old text.
    batcher.push({ step: 2, offset: 0, text: "Again" });
    expect(r.batches).toEqual([]);
    await expect.poll(() => r.batches.length).toBe(1);
    expect(r.batches[0]).toEqual([
      { step: 1, offset: 0, text: "Hello world" },
      { step: 2, offset: 0, text: "Next" },
      { step: 2, offset: 0, text: "Again" },
    ]);
  });

  it("throttles to one write per flushMs: a piece after a quiet interval goes at once, a burst goes together", async () => {
    const r = recorder();
    const at: number[] = [];
    const batcher = new TextBatcher({ write: (p) => (at.push(performance.now()), r.write(p)), flushMs: 80 });
    batcher.push({ step: 1, offset: 0, text: "first " });
    await expect.poll(() => r.batches.length).toBe(1);
    // Within the interval: these wait for it, and go as one write.
    batcher.push({ step: 1, offset: 6, text: "second " });
    batcher.push({ step: 1, offset: 13, text: "third" });
    await expect.poll(() => r.batches.length).toBe(2);
    expect(r.batches[1]).toEqual([{ step: 1, offset: 6, text: "second third" }]);
    expect((at[1] as number) - (at[0] as number)).toBeGreaterThanOrEqual(79);
  });

  it("writes a batch at maxChars at once, keeps one write in flight, and keeps the order", async () => {
    const r = recorder();
    const batcher = new TextBatcher({ write: r.write, flushMs: 60_000, maxChars: 10 });
    r.state.hold = true;
    batcher.push({ step: 1, offset: 0, text: "0123456789" });
    await expect.poll(() => r.state.inFlight).toBe(1);
    batcher.push({ step: 1, offset: 10, text: "abcdefghij" });
    batcher.push({ step: 1, offset: 20, text: "KLMNOPQRST" });
    r.state.hold = false;
    r.release();
    await batcher.flush();
    expect(r.state.maxInFlight).toBe(1);
    expect(
      r.batches
        .flat()
        .map((p) => p.text)
        .join(""),
    ).toBe("0123456789abcdefghijKLMNOPQRST");
    expect(r.batches.flat().map((p) => p.offset)).toEqual([0, 10]);
  });

  it("drops everything once a write is refused (the attempt lost its lock), and says so once", async () => {
    const r = recorder();
    let fenced = 0;
    const batcher = new TextBatcher({ write: r.write, flushMs: 5, onFenced: () => (fenced += 1) });
    batcher.push({ step: 1, offset: 0, text: "kept" });
    await batcher.flush();
    r.state.refuse = true;
    batcher.push({ step: 1, offset: 4, text: " refused" });
    await batcher.flush();
    r.state.refuse = false;
    batcher.push({ step: 1, offset: 12, text: " never sent" });
    await batcher.close();
    expect(r.batches).toEqual([[{ step: 1, offset: 0, text: "kept" }]]);
    expect(fenced).toBe(1);
  });

  it("never throws: a failed write is reported and its batch dropped, later pieces still go", async () => {
    const r = recorder();
    const errors: unknown[] = [];
    const batcher = new TextBatcher({ write: r.write, flushMs: 5, onError: (e) => errors.push(e) });
    r.state.fail = true;
    batcher.push({ step: 1, offset: 0, text: "lost" });
    await batcher.flush();
    r.state.fail = false;
    batcher.push({ step: 1, offset: 4, text: " kept" });
    await batcher.close();
    expect(errors).toHaveLength(1);
    expect(r.batches).toEqual([[{ step: 1, offset: 4, text: " kept" }]]);
  });
});
