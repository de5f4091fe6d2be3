// Preloaded into a worker process (`node --import`) to move its host's wall clock, as on a host
// whose time sync broke or that was just resumed: Date.now() and `new Date()` run
// AGENTRY_TEST_CLOCK_SKEW_MS ahead (negative: behind), or, with AGENTRY_TEST_CLOCK_SKEW_FILE, by
// the number that file holds (read again every 50 ms, so a test can step the clock while the
// process runs). The monotonic clock and timers do not move, as on such a host.
import { readFileSync } from "node:fs";

const file = process.env.AGENTRY_TEST_CLOCK_SKEW_FILE;
let skewMs = Number(process.env.AGENTRY_TEST_CLOCK_SKEW_MS ?? 0);
const readSkew = () => {
  try {
    const text = readFileSync(file, "utf8").trim();
    // Empty while a writer has truncated it and not yet written: keep the last value (reading
    // it as 0 stepped the clock back for 50 ms, and a worker under test resumed).
    if (text !== "" && Number.isFinite(Number(text))) skewMs = Number(text);
  } catch {
    // Not written yet: keep the last value.
  }
};
if (file) {
  readSkew();
  setInterval(readSkew, 50).unref();
}

const RealDate = Date;
const realNow = RealDate.now.bind(RealDate);

class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(realNow() + skewMs);
    else super(...args);
  }

  static now() {
    return realNow() + skewMs;
  }
}

globalThis.Date = SkewedDate;
