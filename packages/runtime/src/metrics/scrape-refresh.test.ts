import { useTestRedis } from "@agentry/testkit";
import { Counter, Gauge, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { COLLECT_ERRORS_METRIC, scrapeTimeRefresh, type RunCollector } from "./scrape-refresh.js";

const redis = useTestRedis("scrape-refresh");

function sample(text: string, nameAndLabels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${nameAndLabels} `));
  return line === undefined ? undefined : Number(line.slice(nameAndLabels.length + 1));
}

/**
 * A registry with two gauges and the collect-error counter, all three collected by one
 * scrape-time refresh, as `createMetrics` sets them up.
 */
function registryWith(timeoutMs: number, refresh: (collect: RunCollector) => Promise<unknown>) {
  const registry = new Registry();
  const collect = scrapeTimeRefresh(registry, timeoutMs, refresh);
  const registers = [registry];
  const first = new Gauge({ name: "test_first", help: "First.", registers, collect });
  const second = new Gauge({ name: "test_second", help: "Second.", registers, collect });
  new Counter({
    name: COLLECT_ERRORS_METRIC,
    help: "Collect errors.",
    labelNames: ["collector"] as const,
    registers,
    collect,
  });
  return { registry, first, second };
}

describe("scrapeTimeRefresh", () => {
  it("makes concurrent scrapes share one refresh, and the next scrape run another", async () => {
    const client = redis.client();
    const reads = `${redis.freshPrefix("reads")}:n`;
    // Each refresh counts itself in Redis; both gauges show that count.
    const { registry, first, second } = registryWith(2_000, (collect) =>
      collect(
        "reads",
        () => client.incr(reads),
        (n) => {
          first.set(n);
          second.set(n);
        },
      ),
    );
    const texts = await Promise.all([registry.metrics(), registry.metrics(), registry.metrics()]);
    expect(Number(await client.get(reads))).toBe(1);
    for (const text of texts) {
      expect(sample(text, "test_first")).toBe(1);
      expect(sample(text, "test_second")).toBe(1);
    }
    const next = await registry.metrics();
    expect(Number(await client.get(reads))).toBe(2);
    expect(sample(next, "test_first")).toBe(2);
    expect(sample(next, `${COLLECT_ERRORS_METRIC}{collector="reads"}`)).toBeUndefined();
  });

  it("bounds a slow read by the timeout, keeps the gauge and counts a collect error", async () => {
    const client = redis.client();
    const blocked = redis.client();
    const prefix = redis.freshPrefix("slow");
    let slow = false;
    let pending: Promise<unknown> | undefined;
    const { registry, first } = registryWith(100, (collect) =>
      collect(
        "slow",
        async () => {
          if (!slow) return 5;
          // BLPOP on a list nobody pushes to while the scrape runs: a read that does not answer.
          pending = blocked.blpop(`${prefix}:never`, 0);
          await pending;
          return 9;
        },
        (n) => first.set(n),
      ),
    );
    expect(sample(await registry.metrics(), "test_first")).toBe(5);
    slow = true;
    const text = await registry.metrics();
    expect(sample(text, "test_first")).toBe(5);
    expect(sample(text, `${COLLECT_ERRORS_METRIC}{collector="slow"}`)).toBe(1);
    // Release the blocked connection so that it can be closed.
    await client.rpush(`${prefix}:never`, "9");
    await pending;
  });

  it("counts a failing read, still answers the scrape and applies the reads that succeeded", async () => {
    const client = redis.client();
    const key = `${redis.freshPrefix("fail")}:value`;
    await client.set(key, "3");
    const { registry, first, second } = registryWith(2_000, (collect) =>
      Promise.all([
        // GET fails with WRONGTYPE once the key holds a list.
        collect(
          "first",
          () => client.get(key),
          (v) => first.set(Number(v)),
        ),
        collect(
          "second",
          () => client.dbsize(),
          () => second.set(1),
        ),
        collect("unset", undefined, () => first.set(-1)),
      ]),
    );
    expect(sample(await registry.metrics(), "test_first")).toBe(3);
    await client.del(key);
    await client.rpush(key, "x");
    const text = await registry.metrics();
    expect(sample(text, "test_first")).toBe(3);
    expect(sample(text, "test_second")).toBe(1);
    expect(sample(text, `${COLLECT_ERRORS_METRIC}{collector="first"}`)).toBe(1);
    expect(sample(text, `${COLLECT_ERRORS_METRIC}{collector="second"}`)).toBeUndefined();
    expect(sample(text, `${COLLECT_ERRORS_METRIC}{collector="unset"}`)).toBeUndefined();
  });

  it("answers the scrape when a read fails and the registry has no collect-error counter", async () => {
    const client = redis.client();
    const key = `${redis.freshPrefix("none")}:list`;
    await client.rpush(key, "x");
    const registry = new Registry();
    const only = new Gauge({
      name: "test_only",
      help: "Only.",
      registers: [registry],
      collect: scrapeTimeRefresh(registry, 2_000, (collect) =>
        collect(
          "only",
          () => client.get(key),
          () => only.set(1),
        ),
      ),
    });
    const text = await registry.metrics();
    expect(text).toContain("# TYPE test_only gauge");
    expect(sample(text, "test_only")).toBe(0);
    expect(text).not.toContain(COLLECT_ERRORS_METRIC);
  });
});
