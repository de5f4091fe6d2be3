import { describe, expect, it } from "vitest";
import { parseWorkerConfig } from "../src/config.js";

describe("worker configuration of queue shards", () => {
  const base = { AGENTRY_LLM: "scripted" };

  it("consumes every shard unless AGENTRY_WORKER_SHARDS names some", () => {
    expect(parseWorkerConfig(base).AGENTRY_WORKER_SHARDS).toEqual([0]);
    expect(parseWorkerConfig({ ...base, AGENTRY_SHARDS: "3" }).AGENTRY_WORKER_SHARDS).toEqual([0, 1, 2]);
    expect(
      parseWorkerConfig({ ...base, AGENTRY_SHARDS: "3", AGENTRY_WORKER_SHARDS: "2,0" }).AGENTRY_WORKER_SHARDS,
    ).toEqual([0, 2]);
  });

  it("refuses a shard that does not exist with INVALID_CONFIG naming the variable", () => {
    for (const [shards, list] of [
      ["3", "5"],
      ["3", "0,3"],
      ["1", "1"],
      ["3", "one"],
      ["3", "1,1"],
    ] as const) {
      let thrown: unknown;
      try {
        parseWorkerConfig({ ...base, AGENTRY_SHARDS: shards, AGENTRY_WORKER_SHARDS: list });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toMatchObject({
        code: "INVALID_CONFIG",
        message: expect.stringContaining("AGENTRY_WORKER_SHARDS"),
      });
    }
    expect(() => parseWorkerConfig({ ...base, AGENTRY_SHARDS: "0" })).toThrowError(/AGENTRY_SHARDS/);
  });
});
