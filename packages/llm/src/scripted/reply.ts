import type { AgentryError } from "@agentry/core";
import type { ModelRequest, StopReason, TextBlock, ToolUseBlock, Usage } from "../model/types.js";

/** A content block of a scripted reply; a tool_use without `id` gets a deterministic one. */
export type ScriptedBlock = TextBlock | (Omit<ToolUseBlock, "id"> & { id?: string });

/** One scripted answer. Usage fields left out are computed (input from the estimate rule, output from the text). */
export interface ScriptedReply {
  content: string | ScriptedBlock[];
  /** @defaultValue `tool_use` when content has a tool_use block, else `end_turn` */
  stopReason?: StopReason;
  usage?: Partial<Usage>;
  /** @defaultValue the request's model, else the default model */
  model?: string;
}

/** A scripted failure: `generate` throws this error. */
export interface ScriptedFailure {
  error: AgentryError;
}

/** A script step: a reply, a failure, or a function of the request (and its 0-based call index). */
export type ScriptedStep =
  | ScriptedReply
  | ScriptedFailure
  | ((request: ModelRequest, call: number) => ScriptedReply | ScriptedFailure);
