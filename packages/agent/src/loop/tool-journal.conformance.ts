import type { ToolResultBlock, ToolUseBlock } from "@agentry/llm";
import { describe, expect, it } from "vitest";
import type { RunContext } from "./hooks.js";
import type { ToolJournal } from "./journal.js";

/** Makes a fresh, empty journal. */
export type ToolJournalFactory = () => Promise<ToolJournal> | ToolJournal;

let counter = 0;
const runOf = (): RunContext => {
  counter += 1;
  return {
    taskId: `task-${process.pid}-${Date.now()}-${counter}`,
    tenant: "acme",
    userId: "u",
    sessionId: "s",
  };
};
const call = (id: string): ToolUseBlock => ({
  type: "tool_use",
  id,
  name: "delete_resource",
  input: { resource: "vm" },
});
const result = (id: string, extra: Partial<ToolResultBlock> = {}): ToolResultBlock => ({
  type: "tool_result",
  toolUseId: id,
  content: "deleted vm",
  ...extra,
});

/**
 * The shared behaviour every {@link ToolJournal} backend must show. Call it inside a test file:
 * `toolJournalConformance("redis", () => new RedisToolJournal(...))`.
 */
export function toolJournalConformance(name: string, factory: ToolJournalFactory): void {
  describe(`ToolJournal conformance: ${name}`, () => {
    it("claims a call once: fresh, then interrupted until completed", async () => {
      const journal = await factory();
      const run = runOf();
      expect(await journal.begin(run, call("c1"))).toEqual({ status: "fresh" });
      expect(await journal.begin(run, call("c1"))).toEqual({ status: "interrupted" });
      expect(await journal.begin(run, call("c1"))).toEqual({ status: "interrupted" });
    });

    it("returns the completed result, error flag included", async () => {
      const journal = await factory();
      const run = runOf();
      await journal.begin(run, call("ok"));
      await journal.complete(run, call("ok"), result("ok"));
      await journal.begin(run, call("bad"));
      await journal.complete(run, call("bad"), result("bad", { content: "boom", isError: true }));
      expect(await journal.begin(run, call("ok"))).toEqual({ status: "done", result: result("ok") });
      expect(await journal.begin(run, call("bad"))).toEqual({
        status: "done",
        result: result("bad", { content: "boom", isError: true }),
      });
    });

    it("keeps tasks and calls apart", async () => {
      const journal = await factory();
      const a = runOf();
      const b = runOf();
      await journal.begin(a, call("c1"));
      expect(await journal.begin(b, call("c1"))).toEqual({ status: "fresh" });
      expect(await journal.begin(a, call("c2"))).toEqual({ status: "fresh" });
    });

    it("lets exactly one of many concurrent begins claim a call", async () => {
      const journal = await factory();
      const run = runOf();
      const outcomes = await Promise.all(Array.from({ length: 20 }, () => journal.begin(run, call("race"))));
      expect(outcomes.filter((o) => o.status === "fresh")).toHaveLength(1);
      expect(outcomes.filter((o) => o.status === "interrupted")).toHaveLength(19);
    });
  });
}
