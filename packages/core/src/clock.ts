import { AgentryError } from "./errors/agentry-error.js";

/** A source of time, injectable in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

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
