import type { Logger } from "pino";

/** Options for {@link RepeatedErrors}. Durations in ms. */
export interface RepeatedErrorsOptions {
  /** The pause after the first report of an error before its repeats are reported. @defaultValue 1_000 */
  firstPauseMs?: number;
  /** The longest pause between two reports of one error (the pause doubles up to it). @defaultValue 60_000 */
  maxPauseMs?: number;
  /** @defaultValue `Date.now` */
  now?: () => number;
}

/**
 * Logs errors that repeat with backoff: the first occurrence of an error at once, then, at most
 * once per pause (doubling up to `maxPauseMs`), one line with how many times it repeated
 * meanwhile (`repeats`). An error is known by the caller's `what` and its message, so a loop that
 * fails on every turn (a `CROSSSLOT` on every BullMQ poll, a reconcile pass against a Redis that
 * is down) writes a few lines a minute, not megabytes. An error quiet for `maxPauseMs` starts
 * over with an immediate report.
 */
export class RepeatedErrors {
  private readonly seen = new Map<
    string,
    { repeats: number; nextAt: number; pauseMs: number; lastAt: number }
  >();
  private readonly firstPauseMs: number;
  private readonly maxPauseMs: number;
  private readonly now: () => number;

  constructor(
    private readonly logger: Logger,
    options: RepeatedErrorsOptions = {},
  ) {
    this.firstPauseMs = options.firstPauseMs ?? 1_000;
    this.maxPauseMs = options.maxPauseMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /** Reports `err` under `what` at `warn` (see the class). `fields` are added to the line. */
  warn(what: string, err: unknown, fields: Record<string, unknown> = {}): void {
    const message = err instanceof Error ? err.message : String(err);
    const key = `${what}\0${message}`;
    const now = this.now();
    let state = this.seen.get(key);
    if (state && now - state.lastAt > this.maxPauseMs) state = undefined;
    if (!state) {
      this.seen.set(key, {
        repeats: 0,
        nextAt: now + this.firstPauseMs,
        pauseMs: this.firstPauseMs,
        lastAt: now,
      });
      if (this.seen.size > 1_000) this.forgetQuiet(now);
      this.logger.warn({ ...fields, err: message }, what);
      return;
    }
    state.lastAt = now;
    state.repeats += 1;
    if (now < state.nextAt) return;
    this.logger.warn(
      { ...fields, err: message, repeats: state.repeats, sinceMs: state.pauseMs },
      `${what} (repeated ${state.repeats} times)`,
    );
    state.repeats = 0;
    state.pauseMs = Math.min(state.pauseMs * 2, this.maxPauseMs);
    state.nextAt = now + state.pauseMs;
  }

  private forgetQuiet(now: number): void {
    for (const [key, state] of this.seen) if (now - state.lastAt > this.maxPauseMs) this.seen.delete(key);
  }
}
