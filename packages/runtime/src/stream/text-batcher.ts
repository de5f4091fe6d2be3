import type { TextDeltaEntry } from "./task-stream.js";

/** Options for {@link TextBatcher}. */
export interface TextBatcherOptions {
  /**
   * Writes one batch of pieces, in order. Resolves false when the attempt may write no more (it
   * lost its lock): the batcher then drops everything, now and later.
   */
  write(pieces: TextDeltaEntry[]): Promise<boolean>;
  /**
   * The shortest time between two writes: a piece that comes when the last write started at
   * least this long ago is written at once; later pieces wait for the interval to pass (or for a
   * write in flight to finish) and go together. So a piece waits at most this long, and a task
   * makes at most one write per interval however fast the model streams. @defaultValue 20
   */
  flushMs?: number;
  /** A batch holding this many characters is written at once. @defaultValue 2_048 */
  maxChars?: number;
  /** Told about a write that failed (the batch is dropped; readers see the gap in the offsets). */
  onError?: (err: unknown) => void;
  /** Told once when a write was refused (the attempt lost its lock). */
  onFenced?: () => void;
}

/**
 * Collects the text pieces of an attempt's model calls and writes them in batches, throttled to
 * one write per `flushMs`: after a quiet interval a piece is written at once (no added delay),
 * while a burst is coalesced into the next write; a batch of `maxChars` goes at once. One write
 * is in flight at a time, so pieces reach the stream in order, and contiguous pieces of one step
 * are merged into one entry. Never throws: streaming text is a live view, the task's result is
 * the record.
 */
export class TextBatcher {
  readonly #write: TextBatcherOptions["write"];
  readonly #flushMs: number;
  readonly #maxChars: number;
  readonly #onError: (err: unknown) => void;
  readonly #onFenced: () => void;
  #pending: TextDeltaEntry[] = [];
  #pendingChars = 0;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  #writing = false;
  /** When the last write started (`performance.now()`). */
  #lastWriteAt = Number.NEGATIVE_INFINITY;

  constructor(options: TextBatcherOptions) {
    this.#write = options.write;
    this.#flushMs = options.flushMs ?? 20;
    this.#maxChars = options.maxChars ?? 2_048;
    this.#onError = options.onError ?? (() => undefined);
    this.#onFenced = options.onFenced ?? (() => undefined);
  }

  /** Queues one piece. Dropped once the batcher is closed or fenced out. */
  push(piece: TextDeltaEntry): void {
    if (this.#closed || piece.text.length === 0) return;
    const last = this.#pending.at(-1);
    if (last && last.step === piece.step && last.offset + last.text.length === piece.offset)
      last.text += piece.text;
    else this.#pending.push({ step: piece.step, offset: piece.offset, text: piece.text });
    this.#pendingChars += piece.text.length;
    if (this.#pendingChars >= this.#maxChars) void this.flush();
    else this.#schedule();
  }

  /** Writes what is queued; resolves once it (and every earlier batch) is written or dropped. */
  flush(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#writeBatch());
    return this.#chain;
  }

  /** Writes what is queued, then accepts nothing more. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }

  /** Plans the next write of what is pending: now if the interval has passed, else when it does; after a write in flight, when it ends. */
  #schedule(): void {
    if (this.#timer !== undefined || this.#writing || this.#pending.length === 0 || this.#closed) return;
    const wait = this.#lastWriteAt + this.#flushMs - performance.now();
    if (wait <= 0) void this.flush();
    else
      // A timer may fire up to a millisecond or two early (whole-millisecond delays, the event
      // loop's cached clock): it plans again, so two writes are never closer than flushMs.
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#schedule();
      }, Math.ceil(wait));
  }

  async #writeBatch(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#pending;
    this.#pending = [];
    this.#pendingChars = 0;
    if (batch.length === 0 || this.#closed) return;
    this.#writing = true;
    this.#lastWriteAt = performance.now();
    try {
      if (!(await this.#write(batch))) {
        this.#closed = true;
        this.#pending = [];
        this.#onFenced();
      }
    } catch (err) {
      this.#onError(err);
    } finally {
      this.#writing = false;
      this.#schedule();
    }
  }
}
