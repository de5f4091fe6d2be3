import { describe, expect, it } from "vitest";
import { formatDuration, formatUsd, parseUsdToMicro, table } from "./format.js";

describe("dollar amounts", () => {
  it("parses decimal text exactly, without float rounding", () => {
    expect(parseUsdToMicro("0.25")).toBe(250_000);
    expect(parseUsdToMicro("19.99")).toBe(19_990_000); // 19.99 * 1e6 is 19989999.999999996 in floating point
    expect(parseUsdToMicro("$3")).toBe(3_000_000);
    expect(parseUsdToMicro(".5")).toBe(500_000);
    expect(parseUsdToMicro("0.000001")).toBe(1);
    expect(parseUsdToMicro("1.2500000")).toBe(1_250_000);
    expect(parseUsdToMicro("0")).toBe(0);
    expect(parseUsdToMicro("7.")).toBe(7_000_000);
  });

  it("refuses what is not a whole number of micro-USD", () => {
    for (const bad of ["0.0000001", "-1", "1e3", "abc", "", "1,000", "9007199254.740992"]) {
      expect(() => parseUsdToMicro(bad), bad).toThrow(/--max-cost/);
    }
  });

  it("formats micro-USD with 6 decimals", () => {
    expect(formatUsd(250_000)).toBe("$0.250000");
    expect(formatUsd(19_990_000)).toBe("$19.990000");
    expect(formatUsd(1)).toBe("$0.000001");
    expect(formatUsd(0)).toBe("$0.000000");
  });
});

describe("human formatting", () => {
  it("formats durations", () => {
    expect(formatDuration(45_000)).toBe("45s");
    expect(formatDuration(3_600_000)).toBe("1h");
    expect(formatDuration(12 * 60_000 + 5_000)).toBe("12m 5s");
    expect(formatDuration(50 * 3_600_000)).toBe("2d 2h");
  });

  it("aligns table columns", () => {
    expect(
      table(
        ["A", "BB"],
        [
          ["xxx", "y"],
          ["z", "w"],
        ],
      ),
    ).toBe("A    BB\nxxx  y\nz    w\n");
  });
});
