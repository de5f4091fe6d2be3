import type { z } from "zod";

/** What a tool handler knows about the call it serves. */
export interface ToolContext {
  taskId: string;
  tenant: string;
  userId: string;
  sessionId: string;
  /** Id of the `tool_use` block being served; stable across retries, so usable as an idempotency key. */
  toolUseId: string;
  /** Aborted when the call times out or the run is cancelled. Long handlers should honour it. */
  signal: AbortSignal;
  attributes: Record<string, string>;
}

/**
 * A tool the model may call. `input` validates (and may transform) what the model sent; the
 * handler receives the parsed value. Whatever the handler returns is sent back to the model:
 * a string as is, anything else JSON-encoded.
 */
export interface Tool<I = unknown, O = unknown> {
  /** `^[a-zA-Z0-9_-]{1,64}$` (the Anthropic rule); unique within a registry. */
  name: string;
  /** What the tool does and when to use it; the model reads this. */
  description: string;
  /** Must describe a JSON object (tool inputs are objects). */
  input: z.ZodType<I>;
  handler(input: I, ctx: ToolContext): Promise<O> | O;
  /**
   * Milliseconds before the call is abandoned with an error result (its signal is aborted).
   * @defaultValue the registry's default, 30 000
   */
  timeoutMs?: number;
  /** Re-running after an interrupted attempt is safe (e.g. a read). @defaultValue false */
  idempotent?: boolean;
  /**
   * The tool destroys or irreversibly changes something (deletes, drops, terminates). Policies
   * see it on the action (`destructive: true`), so a tool whose name does not say so (e.g.
   * `reset_cluster`) is still denied in production by the default policy. Only adds: names such
   * as `drop_table` count as destructive whatever this says. @defaultValue false
   */
  destructive?: boolean;
}

/** Identity function that infers a tool's input and output types. */
export function defineTool<I, O>(tool: Tool<I, O>): Tool<I, O> {
  return tool;
}
