import type { TextDeltaEntry } from "./task-stream.js";

/** What one piece changed in what a client shows of its step (see {@link StreamedText.apply}). */
export type TextChange =
  /** Show `text` after what is shown. */
  | { kind: "append"; step: number; text: string }
  /** Nothing new to show: the piece repeats text already shown (a step generated again, alike so far). */
  | { kind: "none"; step: number }
  /** The step was generated again and differs from what is shown: `text` is the step's whole text now; show it instead. */
  | { kind: "restart"; step: number; text: string }
  /** The piece starts `missing` characters past the text held (pieces trimmed from the stream or lost): show `text` after a gap. */
  | { kind: "gap"; step: number; missing: number; text: string };

/**
 * The texts of a task's model calls, rebuilt from its stream's text pieces (`delta` events),
 * and what a client that prints as it goes has shown of each.
 *
 * A piece is placed at its offset: `text = text.slice(0, offset) + piece`. Pieces of one
 * generation follow each other; a step generated again by a later attempt (its call failed, or
 * its attempt lost the lock before the answer was saved) starts over at offset 0, which replaces
 * the earlier attempt's text instead of adding to it. `apply` reports what to show: only text
 * not shown yet, nothing while a regenerated step repeats what is shown, and a restart when it
 * departs from it. The task's result remains the record of the final text.
 */
export class StreamedText {
  readonly #held = new Map<number, string>();
  readonly #shown = new Map<number, string>();
  /** Per step, characters before the held text that never arrived (a gap): offsets are shifted by it. */
  readonly #lost = new Map<number, number>();

  /** The text of one step so far (after a gap, the part after it). */
  text(step: number): string {
    return this.#held.get(step) ?? "";
  }

  /** The steps that have text, in order. */
  steps(): number[] {
    return [...this.#held.keys()].sort((a, b) => a - b);
  }

  /** Places one piece and reports what to show. */
  apply(piece: TextDeltaEntry): TextChange {
    const { step, text } = piece;
    let lost = this.#lost.get(step) ?? 0;
    let held = this.text(step);
    let shown = this.#shown.get(step) ?? "";
    if (piece.offset < lost) {
      // Starts before a gap: a new generation of the step; what followed the gap is stale.
      lost = 0;
      this.#lost.delete(step);
    }
    const offset = piece.offset - lost;
    if (offset > held.length) {
      const missing = offset - held.length;
      this.#lost.set(step, lost + missing);
      held += text;
      shown = held;
      this.#held.set(step, held);
      this.#shown.set(step, shown);
      return { kind: "gap", step, missing, text };
    }
    const next = held.slice(0, offset) + text;
    this.#held.set(step, next);
    if (next.startsWith(shown)) {
      this.#shown.set(step, next);
      const added = next.slice(shown.length);
      return added.length > 0 ? { kind: "append", step, text: added } : { kind: "none", step };
    }
    if (shown.startsWith(next)) return { kind: "none", step };
    this.#shown.set(step, next);
    return { kind: "restart", step, text: next };
  }
}
