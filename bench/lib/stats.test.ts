import { describe, expect, it } from "vitest";
import { P99_MIN_SAMPLES, p99, p99Text, percentile, sortedCopy, tail } from "./stats.js";

/** 1, 2, …, n */
const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("percentile (nearest rank)", () => {
  it("takes the sample at rank ⌈p/100 × n⌉", () => {
    const xs = [15, 20, 35, 40, 50];
    expect(percentile(xs, 5)).toBe(15);
    expect(percentile(xs, 30)).toBe(20);
    expect(percentile(xs, 40)).toBe(20);
    expect(percentile(xs, 50)).toBe(35);
    expect(percentile(xs, 100)).toBe(50);
  });

  it("never interpolates and lands on the boundary sample at exact ranks", () => {
    const xs = oneTo(100);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 90)).toBe(90);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(oneTo(10), 25)).toBe(3);
    expect(percentile([3, 8], 50)).toBe(3);
  });

  it("is NaN on no samples and refuses a p outside (0, 100]", () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 0)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });
});

describe("p99 needs at least 100 samples", () => {
  it("is reported from 100 samples and more", () => {
    expect(P99_MIN_SAMPLES).toBe(100);
    expect(p99(oneTo(100))).toBe(99);
    expect(p99(oneTo(1000))).toBe(990);
    expect(p99Text(oneTo(200), 1)).toBe("198.0");
    expect(tail(oneTo(100))).toEqual({ name: "p99", value: 99 });
  });

  it("is withheld below 100: the text says n/a and the tail falls back to the max", () => {
    expect(p99(oneTo(99))).toBeUndefined();
    expect(p99Text(oneTo(20), 2)).toBe("n/a (n<100)");
    expect(tail(oneTo(20))).toEqual({ name: "max", value: 20 });
    expect(tail([]).name).toBe("max");
    expect(tail([]).value).toBeNaN();
  });

  it("works on a sorted copy and leaves the input alone", () => {
    const xs = [5, 1, 4];
    expect(sortedCopy(xs)).toEqual([1, 4, 5]);
    expect(xs).toEqual([5, 1, 4]);
  });
});
