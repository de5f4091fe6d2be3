import type { Redis } from "ioredis";

/**
 * Wake-ups for readers of task streams: every write to a task's stream is announced on the
 * channel named like the stream (from inside the writing script, with what it wrote: see
 * `TaskStreamNotice`). One subscriber connection
 * serves every reader of a process; a channel is subscribed while at least one reader listens.
 * A wake-up says only "read the stream": what a reader sends always comes from the stream, so a
 * missed or early wake-up can delay an entry, never lose or reorder one.
 */
export class TaskStreamWakeups {
  readonly #subscriber: Redis;
  readonly #listeners = new Map<string, Set<(message: string) => void>>();
  /** Subscribe and unsubscribe commands, in the order issued, so they never overtake each other. */
  #chain: Promise<unknown> = Promise.resolve();

  /** `subscriber` is a connection this object owns from now on (it enters subscriber mode). */
  constructor(subscriber: Redis) {
    this.#subscriber = subscriber;
    this.#subscriber.on("message", (channel: string, message: string) => {
      for (const listener of this.#listeners.get(channel) ?? []) listener(message);
    });
  }

  /**
   * Calls `listener` with the channel's message on every write to the stream at `key`, from when
   * the returned promise resolves (the channel is then subscribed). The result removes the listener.
   */
  async listen(key: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    let listeners = this.#listeners.get(key);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(key, listeners);
    }
    listeners.add(listener);
    await this.#queue(() => (this.#listeners.get(key)?.size ? this.#subscriber.subscribe(key) : undefined));
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      const set = this.#listeners.get(key);
      set?.delete(listener);
      if (set?.size === 0) {
        this.#listeners.delete(key);
        await this.#queue(() =>
          this.#listeners.has(key) ? undefined : this.#subscriber.unsubscribe(key),
        ).catch(() => undefined);
      }
    };
  }

  /** Closes the subscriber connection. */
  async close(): Promise<void> {
    this.#listeners.clear();
    await this.#subscriber.quit().catch(() => this.#subscriber.disconnect());
  }

  #queue(command: () => Promise<unknown> | undefined): Promise<unknown> {
    const next = this.#chain.then(command);
    this.#chain = next.catch(() => undefined);
    return next;
  }
}
