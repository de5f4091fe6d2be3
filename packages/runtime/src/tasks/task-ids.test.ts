import { describe, expect, it } from "vitest";
import { newId } from "@agentry/core";
import { isGroupId, isTaskId, taskIdFor } from "./task-ids.js";

describe("task and group id shapes", () => {
  it("accepts every id Agentry makes, with or without an idempotency key", () => {
    for (let i = 0; i < 50; i++) {
      expect(isTaskId(taskIdFor("acme"))).toBe(true);
      expect(isTaskId(taskIdFor("acme", `order-${i}`))).toBe(true);
      expect(isGroupId(newId("group"))).toBe(true);
    }
  });

  it("refuses BullMQ's own key names, other kinds and odd spellings", () => {
    const task = taskIdFor("acme", "k");
    for (const id of [
      "completed",
      "id",
      "events",
      "meta",
      "wait",
      "",
      newId("group"),
      task.toUpperCase(),
      `${task}:lock`,
      ` ${task}`,
      `${task}\n`,
      42,
      undefined,
    ]) {
      expect(isTaskId(id), String(id)).toBe(false);
    }
    for (const id of ["completed", task, newId("group").toUpperCase(), `${newId("group")}:dependencies`]) {
      expect(isGroupId(id), id).toBe(false);
    }
  });
});
