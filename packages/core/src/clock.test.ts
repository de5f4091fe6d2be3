import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it, inject, vi } from "vitest";
import { keepClockSynced, syncClock, systemClock, unsyncClock, type ClockReading } from "./index.js";

const url = inject("redisUrl");
const redis = new Redis(url, { maxRetriesPerRequest: null });
afterAll(() => redis.quit());
afterEach(() => {
  vi.restoreAllMocks();
  unsyncClock();
});

const TEN_MINUTES = 600_000;
/** Redis's time now, in ms. */
async function redisNow(): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Number(us) / 1000;
}
/** This host's wall clock, made to run `skewMs` ahead. */
function skewHostClock(skewMs: number): void {
  const real = Date.now.bind(Date);
  vi.spyOn(Date, "now").mockImplementation(() => real() + skewMs);
}

describe("systemClock synced with Redis", () => {
  it("is the host's clock until synced, then Redis's time whatever the host's clock says", async () => {
    skewHostClock(TEN_MINUTES);
    const before = await redisNow();
    expect(systemClock.now() - before).toBeGreaterThan(TEN_MINUTES - 5_000);

    const reading = await syncClock(redis);
    // The host runs 10 minutes fast: Redis's time is 10 minutes behind it.
    expect(Math.abs(reading.offsetMs + TEN_MINUTES)).toBeLessThan(5_000);
    expect(reading.roundTripMs).toBeGreaterThanOrEqual(0);
    // Within the round trips of the two readings (slow on a busy machine, never 10 minutes).
    const t0 = await redisNow();
    const now = systemClock.now();
    const t1 = await redisNow();
    expect(now).toBeGreaterThanOrEqual(Math.floor(t0) - Math.ceil(reading.roundTripMs));
    expect(now).toBeLessThanOrEqual(Math.ceil(t1) + Math.ceil(reading.roundTripMs));
    expect(Number.isInteger(now)).toBe(true);
  });

  it("does not follow the host's clock being stepped after a sync", async () => {
    await syncClock(redis);
    const a = systemClock.now();
    skewHostClock(3_600_000);
    const b = systemClock.now();
    expect(b - a).toBeGreaterThanOrEqual(0);
    expect(b - a).toBeLessThan(60_000);
  });

  it("never goes back for a later reading's jitter, but follows Redis's clock stepping back", async () => {
    const at = performance.now();
    const [s, us] = await redis.time();
    const redisMs = Number(s) * 1000 + Number(us) / 1000;
    // Readings as a TimeSource would give them: one, then one 400 ms earlier (jitter), then one
    // an hour earlier (Redis's clock stepped back).
    const source = (ms: number) => ({
      time: async () => {
        const t = ms + (performance.now() - at);
        return [String(Math.floor(t / 1000)), String(Math.floor((t % 1000) * 1000))];
      },
    });
    await syncClock(source(redisMs), 1);
    const first = systemClock.now();
    await syncClock(source(redisMs - 400), 1);
    expect(systemClock.now()).toBeGreaterThanOrEqual(first);
    await syncClock(source(redisMs - 3_600_000), 1);
    expect(first - systemClock.now()).toBeGreaterThan(3_500_000);
  });

  it("keepClockSynced reports a large offset once, not at every sync", async () => {
    skewHostClock(-TEN_MINUTES);
    const reports: ClockReading[] = [];
    let syncs = 0;
    const counting = {
      time: () => {
        syncs += 1;
        return redis.time();
      },
    };
    const stop = await keepClockSynced(counting, { everyMs: 20, onSkew: (r) => reports.push(r) });
    try {
      // Three samples a sync: wait for three more syncs after the first.
      await vi.waitFor(() => expect(syncs).toBeGreaterThanOrEqual(12), { timeout: 30_000, interval: 20 });
    } finally {
      stop();
    }
    expect(reports).toHaveLength(1);
    expect(Math.abs((reports[0]?.offsetMs ?? 0) - TEN_MINUTES)).toBeLessThan(5_000);
  });

  it("a Redis user that may not run TIME keeps the host's clock and is told why", async () => {
    const user = `no-time-${randomBytes(4).toString("hex")}`;
    await redis.acl("SETUSER", user, "on", ">pw", "resetkeys", "-@all", "+@connection");
    const limited = new Redis(url, { username: user, password: "pw", maxRetriesPerRequest: null });
    try {
      const errors: unknown[] = [];
      const stop = await keepClockSynced(limited, { onError: (err) => errors.push(err) });
      stop();
      expect(String(errors[0])).toContain("NOPERM");
      skewHostClock(TEN_MINUTES);
      expect(systemClock.now() - (await redisNow())).toBeGreaterThan(TEN_MINUTES - 5_000);
    } finally {
      limited.disconnect();
      await redis.acl("DELUSER", user);
    }
  });
});
