import type { ToolResultBlock, ToolUseBlock } from "@agentry/llm";
import type { RunContext } from "./hooks.js";

/** What {@link ToolJournal.begin} found about a call. */
export type ToolJournalBegin =
  { status: "fresh" } | { status: "done"; result: ToolResultBlock } | { status: "interrupted" };

/**
 * Journal for at-least-once tool execution across processes. `begin()` claims the call before
 * the handler runs; `complete()` records its result. A call that was begun but never completed
 * (the worker died mid-handler) reports `interrupted`, so the loop can refuse to run a
 * non-idempotent tool twice.
 */
export interface ToolJournal {
  begin(run: RunContext, call: ToolUseBlock): Promise<ToolJournalBegin>;
  complete(run: RunContext, call: ToolUseBlock, result: ToolResultBlock): Promise<void>;
  /**
   * The claimant gave up on a call whose outcome it cannot know (its run was stopped while the
   * tool ran): no result will come from it, so a later attempt need not wait for one and reports
   * the call as interrupted at once.
   */
  abandon?(run: RunContext, call: ToolUseBlock): Promise<void>;
}

/** In-process reference {@link ToolJournal}, keyed by task id and tool_use id. */
export class InMemoryToolJournal implements ToolJournal {
  readonly #entries = new Map<string, { result?: ToolResultBlock }>();

  async begin(run: RunContext, call: ToolUseBlock): Promise<ToolJournalBegin> {
    const key = keyOf(run, call);
    const entry = this.#entries.get(key);
    if (entry === undefined) {
      this.#entries.set(key, {});
      return { status: "fresh" };
    }
    return entry.result === undefined ? { status: "interrupted" } : { status: "done", result: entry.result };
  }

  async complete(run: RunContext, call: ToolUseBlock, result: ToolResultBlock): Promise<void> {
    this.#entries.set(keyOf(run, call), { result });
  }
}

function keyOf(run: RunContext, call: ToolUseBlock): string {
  return JSON.stringify([run.taskId, call.id]);
}
