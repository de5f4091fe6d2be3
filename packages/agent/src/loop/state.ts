import type { Message, ToolResultBlock, ToolUseBlock, Usage } from "@agentry/llm";
import { AgentryError } from "@agentry/core";
import { z } from "zod";

/** A tool call of the last assistant turn, with what is known about it so far. */
export interface PendingToolCall {
  call: ToolUseBlock;
  /** Set once obtained; a call with a result is never run again. */
  result?: ToolResultBlock;
  /** Set while the call waits (e.g. for an approval). */
  suspension?: { reason: string; data?: Record<string, unknown> };
}

/**
 * Everything needed to continue a run in another process. Plain JSON: store it with
 * `JSON.stringify`, continue with `runAgent({ ..., state: JSON.parse(text) })`.
 */
export interface AgentState {
  version: 1;
  /** The whole conversation, input included. */
  messages: Message[];
  /** Model calls made so far. */
  step: number;
  /** Usage summed over those calls. */
  usage: Usage;
  /** Micro-USD the hooks charged for those calls (see `ModelCallCharge`). @defaultValue 0 */
  costMicroUsd?: number;
  /** Tool calls of the last assistant turn whose results are not yet in `messages`. */
  pending: PendingToolCall[];
  /** How many of `messages` were input to the run (history and the new user message). @defaultValue 0 */
  inputLength?: number;
  /** Memories recalled when the run started, reused on resume so the system prompt stays stable. */
  recalled?: string[];
}

const textBlock = z.object({ type: z.literal("text"), text: z.string() });
const toolUseBlock = z.object({
  type: z.literal("tool_use"),
  id: z.string(),
  name: z.string(),
  input: z.unknown(),
});
const toolResultBlock = z.object({
  type: z.literal("tool_result"),
  toolUseId: z.string(),
  content: z.string(),
  isError: z.boolean().optional(),
});
const usage = z.object({
  input: z.number().int().nonnegative(),
  output: z.number().int().nonnegative(),
  cacheCreationInput: z.number().int().nonnegative(),
  cacheReadInput: z.number().int().nonnegative(),
});
const suspension = z.object({ reason: z.string(), data: z.record(z.string(), z.unknown()).optional() });

/** Schema of {@link AgentState}, used to check a state that came from storage. */
export const agentStateSchema = z.object({
  version: z.literal(1),
  messages: z.array(
    z.object({
      role: z.enum(["user", "assistant"]),
      content: z.union([
        z.string(),
        z.array(z.discriminatedUnion("type", [textBlock, toolUseBlock, toolResultBlock])),
      ]),
    }),
  ),
  step: z.number().int().nonnegative(),
  usage,
  costMicroUsd: z.number().nonnegative().optional(),
  pending: z.array(
    z.object({ call: toolUseBlock, result: toolResultBlock.optional(), suspension: suspension.optional() }),
  ),
  inputLength: z.number().int().nonnegative().optional(),
  recalled: z.array(z.string()).optional(),
});

/** Validates a stored state; throws `INVALID_INPUT` listing the failing fields. */
export function parseAgentState(value: unknown): AgentState {
  const parsed = agentStateSchema.safeParse(value);
  if (!parsed.success) {
    const fields = parsed.error.issues.map(
      (i) => `${i.path.map(String).join(".") || "(state)"}: ${i.message}`,
    );
    throw new AgentryError("INVALID_INPUT", `Agent state is not valid: ${fields.join("; ")}`, {
      details: { fields },
    });
  }
  return parsed.data as AgentState;
}
