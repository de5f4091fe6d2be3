import type { Redis } from "ioredis";
import { defineScripts, isNoScriptError } from "@agentry/core";
import { DEFAULT_TASK_STREAM_LIMITS, type TaskStreamLimits, type TextDeltaEntry } from "./task-stream.js";

const scripts = defineScripts<{
  appendText: (keys: [lock: string, stream: string], args: string[]) => number;
}>(import.meta.url, { appendText: "append-text-2.lua" });

/** Options for {@link TextAppender}. */
export interface TextAppenderOptions extends TaskStreamLimits {
  /**
   * How long an append waits for others to go out with it: the appends of every task of the
   * process within one tick are sent as one pipeline (one socket write, one round trip).
   * @defaultValue 5
   */
  tickMs?: number;
}

/** Where one task's text goes: its job lock (the fence) and its stream. */
export interface TextTarget {
  lock: string;
  stream: string;
}

interface Queued {
  keys: [lock: string, stream: string];
  args: string[];
  resolve(written: boolean): void;
  reject(err: unknown): void;
}

/**
 * Appends model text to task streams through `append-text-2.lua` (fenced by each task's job
 * lock, capped, expiring, announced), for all the tasks of a worker process at once: appends
 * made within `tickMs` of each other leave together as one pipeline. Streaming
 * tasks each write often and little, so this keeps the process's socket writes (and Redis's
 * reads) to one per tick instead of one per piece.
 */
export class TextAppender {
  readonly #redis: Redis;
  readonly #limits: Required<Omit<TaskStreamLimits, "finishedTtlMs">>;
  readonly #tickMs: number;
  #queue: Queued[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(redis: Redis, options: TextAppenderOptions = {}) {
    this.#redis = redis;
    this.#limits = {
      maxLen: options.maxLen ?? DEFAULT_TASK_STREAM_LIMITS.maxLen,
      ttlMs: options.ttlMs ?? DEFAULT_TASK_STREAM_LIMITS.ttlMs,
    };
    this.#tickMs = options.tickMs ?? 5;
    scripts.appendText.defineOn(redis);
  }

  /** Appends `pieces` to the target's stream, in order. Resolves false (nothing written) when `token` no longer holds the lock. */
  append(target: TextTarget, token: string, pieces: readonly TextDeltaEntry[]): Promise<boolean> {
    if (pieces.length === 0) return Promise.resolve(true);
    const args = [token, String(this.#limits.maxLen), String(this.#limits.ttlMs)];
    for (const p of pieces) args.push(String(p.step), String(p.offset), p.text);
    return new Promise((resolve, reject) => {
      this.#queue.push({ keys: [target.lock, target.stream], args, resolve, reject });
      this.#timer ??= setTimeout(() => void this.flush(), this.#tickMs);
    });
  }

  /** Sends what is queued now; resolves when it (and every earlier send) is answered. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#queue;
    this.#queue = [];
    this.#flushing = this.#flushing.then(() => this.#send(batch));
    return this.#flushing;
  }

  async #send(batch: Queued[]): Promise<void> {
    if (batch.length === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const item of batch) scripts.appendText.queue(pipeline, item.keys, item.args);
    let results: [Error | null, unknown][] | null;
    try {
      results = await pipeline.exec();
    } catch (err) {
      for (const item of batch) item.reject(err);
      return;
    }
    await Promise.all(
      batch.map(async (item, i) => {
        const [err, reply] = results?.[i] ?? [new Error("no reply in the pipeline"), null];
        try {
          // The server lost its script cache between the pipeline's load and its run (a restart):
          // the plain call sends it again.
          if (isNoScriptError(err))
            item.resolve((await scripts.appendText(this.#redis, item.keys, item.args)) === 1);
          else if (err) item.reject(err);
          else item.resolve(reply === 1);
        } catch (e) {
          item.reject(e);
        }
      }),
    );
  }
}
