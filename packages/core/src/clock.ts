import { AgentryError } from "./errors/agentry-error.js";

/** A source of time, injectable in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/**
 * The deployment's clock: this host's wall clock until `syncClock` has read Redis's `TIME`, then
 * Redis's time carried forward on this process's monotonic clock. Every lease, slot and expiry
 * Agentry writes to Redis (budget reservations and allowances, tenant run slots, approvals, parked
 * tasks) is a timestamp that other processes compare with their own `now`, so they must share one
 * clock: with host clocks alone, a host whose clock runs fast would reap live reservations and
 * expire pending approvals early. The monotonic clock also keeps a host's clock being stepped
 * between two syncs out of it; jitter between two readings never takes it back.
 */
export const systemClock: Clock = {
  now: () => {
    if (!synced) return Date.now();
    const now = Math.floor(synced.redisMs + (performance.now() - synced.at));
    // A later reading may put Redis's time a little (half a round trip) before the last one's:
    // that does not take the clock back. A real step back of Redis's clock (a second or more) does.
    if (now >= lastSynced || lastSynced - now >= 1_000) lastSynced = now;
    return lastSynced;
  },
};

/** Redis's time at `at` (this process's `performance.now()`), from the last sync. */
let synced: { redisMs: number; at: number } | undefined;
/** The last synced time handed out. */
let lastSynced = 0;

/** What `syncClock` needs of a Redis connection or cluster. */
export interface TimeSource {
  time(): Promise<[string, string] | [number, number] | unknown[]>;
}

/** One clock sync: how far this host's wall clock is from Redis's, and how sure the reading is. */
export interface ClockReading {
  /** Redis's time less this host's wall clock, in ms (positive: this host is behind). */
  offsetMs: number;
  /** The round trip of the reading used, in ms: the offset is known to within half of it. */
  roundTripMs: number;
}

/**
 * Sets `systemClock` to Redis's time (whole ms, as `Date.now()`): reads `TIME` `samples` times and keeps the reading with the
 * shortest round trip, taking Redis's time at its middle. Returns the reading.
 */
export async function syncClock(redis: TimeSource, samples = 3): Promise<ClockReading> {
  const { base, reading } = await readRedisTime(redis, samples);
  synced = base;
  return reading;
}

async function readRedisTime(
  redis: TimeSource,
  samples = 3,
): Promise<{ base: { redisMs: number; at: number }; reading: ClockReading }> {
  let best: { redisMs: number; at: number; roundTripMs: number } | undefined;
  for (let i = 0; i < Math.max(1, samples); i++) {
    const sent = performance.now();
    const reply = await redis.time();
    const received = performance.now();
    const [seconds, micros] = (reply as unknown[]).map(Number);
    if (!Number.isFinite(seconds) || !Number.isFinite(micros))
      throw new AgentryError("INTERNAL", `TIME answered ${JSON.stringify(reply)}`);
    const roundTripMs = received - sent;
    if (!best || roundTripMs < best.roundTripMs)
      best = {
        redisMs: (seconds as number) * 1000 + (micros as number) / 1000 + roundTripMs / 2,
        at: received,
        roundTripMs,
      };
  }
  const { redisMs, at, roundTripMs } = best as { redisMs: number; at: number; roundTripMs: number };
  return {
    base: { redisMs, at },
    reading: { offsetMs: Math.round(redisMs - (Date.now() - (performance.now() - at))), roundTripMs },
  };
}

/** "<n> ms ahead of Redis's" or "<n> ms behind Redis's", from a reading's offset (Redis's time less this host's). */
export function describeSkew(offsetMs: number): string {
  return `${Math.abs(offsetMs)} ms ${offsetMs > 0 ? "behind" : "ahead of"} Redis's`;
}

/** Back to this host's wall clock (tests). */
export function unsyncClock(): void {
  synced = undefined;
  lastSynced = 0;
}

/** What `keepClockSynced` reports. */
export interface ClockSyncOptions {
  /** How often to read Redis's time again. @defaultValue 60_000 */
  everyMs?: number;
  /** An offset at least this large (ms, either way) is reported to `onSkew`. @defaultValue 1_000 */
  warnAtMs?: number;
  /** Called once for a large offset, and again only when it has moved by `warnAtMs` since. */
  onSkew?: (reading: ClockReading) => void;
  /** Called with every reading, the first one included. */
  onReading?: (reading: ClockReading) => void;
  /** Called when a sync fails (the last reading stays in use). */
  onError?: (err: unknown) => void;
}

/**
 * Syncs `systemClock` with Redis now and then every `everyMs` (an unref'd timer), until the
 * returned function is called. The first sync is awaited: a Redis that answers nothing fails
 * the start here. A user whose ACL refuses `TIME` keeps this host's clock, reported to `onError`.
 */
export async function keepClockSynced(
  redis: TimeSource,
  options: ClockSyncOptions = {},
): Promise<() => void> {
  const warnAt = options.warnAtMs ?? 1_000;
  let reported: number | undefined;
  let stopped = false;
  let inFlight: Promise<void> | undefined;
  // While Redis does not answer, one sync waits for it, not one per beat.
  const sync = () => (inFlight ??= syncOnce().finally(() => (inFlight = undefined)));
  const syncOnce = async () => {
    const { base, reading } = await readRedisTime(redis);
    // A reading that lands after the stop is dropped.
    if (stopped) return;
    synced = base;
    options.onReading?.(reading);
    if (Math.abs(reading.offsetMs) < warnAt) reported = undefined;
    else if (reported === undefined || Math.abs(reading.offsetMs - reported) >= warnAt) {
      reported = reading.offsetMs;
      options.onSkew?.(reading);
    }
  };
  try {
    await sync();
  } catch (err) {
    if (!(err instanceof Error && err.message.startsWith("NOPERM"))) throw err;
    options.onError?.(err);
    return () => {};
  }
  const timer = setInterval(
    () => void sync().catch((err: unknown) => options.onError?.(err)),
    options.everyMs ?? 60_000,
  );
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

/** Sleeps for `ms`, or rejects with the signal's reason if aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Settles as `promise` does, or rejects with `TIMEOUT` (`[<what> ]timed out after <ms> ms`) once
 * `ms` have passed. The timer is cleared as soon as either happens. The promise itself is not
 * cancelled: pass a signal to the work when it must stop.
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what?: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new AgentryError("TIMEOUT", `${what === undefined ? "" : `${what} `}timed out after ${ms} ms`, {
            details: { timeoutMs: ms },
          }),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
