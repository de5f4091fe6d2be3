import { tenantOwnedId } from "@agentry/core";
import type { VectorMemory } from "@agentry/memory";
import { z } from "zod";
import { defineTool, type Tool, type ToolContext } from "../tools/tool.js";

/**
 * The part of `@agentry/memory`'s `VectorMemory` the agent uses (`add` and `search`), so a
 * store that cannot delete or count fits too.
 */
export type MemoryLike = Pick<VectorMemory, "add" | "search">;

/** Picks the memory namespace for a tool call. */
export type MemoryNamespaceFn = (ctx: ToolContext) => string;

/**
 * The default memory namespace of a user: `tenant:<tenant>:user:<userId>` (`tenantOwnedId`), so
 * the same user id in another tenant is another namespace. Use it for recall config too.
 */
export function memoryNamespace(tenant: string, userId: string): string {
  return tenantOwnedId(tenant, "user", userId);
}

const byUser: MemoryNamespaceFn = (ctx) => memoryNamespace(ctx.tenant, ctx.userId);

/** Options for {@link recallTool}. */
export interface RecallToolOptions {
  /** Most memories returned. @defaultValue 5 */
  k?: number;
  /** Hits scoring below this are dropped. @defaultValue no floor */
  minScore?: number;
}

/** `remember {text}`: stores a fact in the user's memory (namespace from the call's tenant and user by default). */
export function rememberTool(
  memory: MemoryLike,
  namespace: MemoryNamespaceFn = byUser,
): Tool<{ text: string }, { id: string; remembered: true }> {
  return defineTool({
    name: "remember",
    description:
      "Store a fact worth keeping about the user or their work (a preference, a decision, a detail) so it can be recalled in later conversations.",
    input: z.object({
      text: z.string().min(1).max(4000).describe("The fact to remember, as a self-contained sentence."),
    }),
    async handler({ text }, ctx) {
      const record = await memory.add({
        namespace: namespace(ctx),
        text,
        metadata: { taskId: ctx.taskId, sessionId: ctx.sessionId },
      });
      return { id: record.id, remembered: true as const };
    },
  });
}

/** `recall {query}`: searches the user's memory and returns the closest memories, best first. */
export function recallTool(
  memory: MemoryLike,
  namespace: MemoryNamespaceFn = byUser,
  options: RecallToolOptions = {},
): Tool<{ query: string }, { memories: { text: string; score: number }[] }> {
  const k = options.k ?? 5;
  return defineTool({
    name: "recall",
    description:
      "Search what was remembered earlier about the user; returns the closest memories, best first.",
    input: z.object({ query: z.string().min(1).max(2000).describe("What to look for.") }),
    idempotent: true,
    async handler({ query }, ctx) {
      const hits = await memory.search({
        namespace: namespace(ctx),
        query,
        k,
        ...(options.minScore === undefined ? {} : { minScore: options.minScore }),
      });
      return { memories: hits.map((h) => ({ text: h.text, score: Math.round(h.score * 1000) / 1000 })) };
    },
  });
}

/** Heading under which recalled memories are put into the system prompt. */
export const RECALL_HEADING = "## Memories about this user (recalled from earlier conversations)";

/** Appends recalled memories to a system prompt under {@link RECALL_HEADING}; returns it unchanged when there are none. */
export function systemWithMemories(system: string | undefined, memories: string[]): string | undefined {
  if (memories.length === 0) return system;
  const section = `${RECALL_HEADING}\n${memories.map((m) => `- ${m.replace(/\s+/g, " ").trim()}`).join("\n")}`;
  return system === undefined || system === "" ? section : `${system}\n\n${section}`;
}
