import { fileURLToPath } from "node:url";
import { format, resolveConfig } from "prettier";
import { describe, expect, it } from "vitest";
import { renderFormatted, renderReport, type BenchRecord } from "./report.js";

const DOC = fileURLToPath(new URL("../../docs/benchmarks.md", import.meta.url));

function record(dirty: boolean): BenchRecord {
  return {
    facts: {
      date: "2026-01-02T03:04:05.000Z",
      cpus: 2,
      cpuModel: "Test CPU",
      memoryGb: 8,
      freeMemoryGb: 6,
      loadAverage: [0.5, 0.4, 0.3],
      platform: "Linux test x64",
      node: "v24.0.0",
      redis: "7.0.15 (standalone)",
      bullmq: "6.7.0",
      commit: "abc1234",
      dirty,
      persistence: "AOF off, no RDB snapshots",
    },
    loadAtEnd: [0.6, 0.5, 0.4],
    runCommand: "pnpm bench",
    redisKind: "a private redis-server started by the runner",
    totalSeconds: 90,
    headline: ["ratio "],
    notes: ["A known limit."],
    runs: [
      {
        name: "one",
        title: "First benchmark",
        about: "What the first one measures.",
        command: "node bench/one.ts --n 1",
        status: "ok",
        seconds: 12,
        figures: [
          { label: "ratio a ÷ b", value: 0.5, note: "same run" },
          { label: "a/s", value: 12345, unit: "tasks/s" },
        ],
        output: "a table",
        note: "How to read the first one.",
      },
      {
        name: "two",
        title: "Second benchmark",
        about: "What the second one measures.",
        command: "node bench/two.ts",
        status: "missing",
        seconds: 0,
        figures: [],
        output: "",
      },
    ],
  };
}

describe("the benchmarks document", () => {
  it("names its commit and whether the tree was clean", () => {
    expect(renderReport(record(false))).toContain("at commit `abc1234` with a clean working tree");
    expect(renderReport(record(true))).toContain("at commit `abc1234` **with uncommitted changes**");
    expect(renderReport(record(true))).toContain("| commit | abc1234, with uncommitted changes |");
  });

  it("holds what the record holds: every about, note, figure and known limit, headline figures in the summary", () => {
    const text = renderReport(record(false));
    for (const s of [
      "What the first one measures.",
      "How to read the first one.",
      "| a/s | 12,345 tasks/s |  |",
      "- A known limit.",
      "Not run: the script was not there",
      "AOF off, no RDB snapshots",
    ])
      expect(text).toContain(s);
    const summary = text.slice(text.indexOf("## Summary"), text.indexOf("## First benchmark"));
    expect(summary).toContain("ratio a ÷ b");
    expect(summary).not.toContain("a/s");
  });

  it("is a pure function of the record, already in the repository's prettier format", async () => {
    const first = await renderFormatted(record(false), DOC);
    expect(await renderFormatted(record(false), DOC)).toBe(first);
    expect(await format(first, { ...(await resolveConfig(DOC)), filepath: DOC })).toBe(first);
  });
});
