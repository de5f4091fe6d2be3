import { AgentryError, positiveInt } from "@agentry/core";
import {
  addUsage,
  ZERO_USAGE,
  type LanguageModel,
  type Message,
  type ModelRequest,
  type ModelResponse,
  type TextBlock,
  type TextDelta,
  type ToolResultBlock,
  type ToolUseBlock,
  type Usage,
} from "@agentry/llm";
import { systemWithMemories, type MemoryLike } from "../memory/memory-tools.js";
import type { ToolContext } from "../tools/tool.js";
import type { ToolRegistry } from "../tools/registry.js";
import type { AgentHooks, RunContext, ToolCallDecision, ToolCallInfo } from "./hooks.js";
import type { ToolJournal } from "./journal.js";
import { agentStateSchema, parseAgentState, type AgentState, type PendingToolCall } from "./state.js";

/** Options of {@link runAgent}. */
export interface RunAgentOptions {
  model: LanguageModel;
  tools: ToolRegistry;
  system?: string;
  /** Conversation so far incl. the new user message, which must come last (ignored when `state` is given). */
  messages?: Message[];
  /** A state from a checkpoint or a suspended result: continue from there. */
  state?: AgentState;
  run: RunContext;
  hooks?: AgentHooks;
  /** Claims each tool call before it runs, so a call interrupted by a crash is never blindly re-run. @defaultValue none */
  journal?: ToolJournal;
  /**
   * Most model calls for the task, counted across resumes. When the last allowed call still asks
   * for tools, the run fails with `STEP_LIMIT` (retryable: false) without running them, since no
   * model call could read their results. @defaultValue 10
   */
  maxSteps?: number;
  /** `max_tokens` of each model call (hooks may lower it). @defaultValue 1024 */
  maxTokens?: number;
  /** @defaultValue the model's default */
  modelId?: string;
  temperature?: number;
  /** Ask the provider to cache the system prompt and tool list. @defaultValue false */
  cache?: boolean;
  /** Aborting it stops the run with `CANCELLED`; tool handlers see it too. */
  signal?: AbortSignal;
  /**
   * The provider call's own signal. @defaultValue `signal`. A runtime that stops a run for a
   * reason that does not cancel the task (its attempt lost the job lock) lets a call already in
   * flight finish, so the usage the provider billed is known and settled; the run stops right
   * after it.
   */
  modelSignal?: AbortSignal;
  /** Checked before each model call after the first; true completes the run with the last assistant text. */
  stopWhen?: (state: AgentState) => boolean;
  /** Put the top-k memories of `namespace` (searched with the new user message) into the system prompt. */
  recall?: { memory: MemoryLike; namespace: string; k?: number; minScore?: number };
  /** Largest accepted new user message, in bytes of its JSON form. @defaultValue 262 144 (256 KiB) */
  maxInputBytes?: number;
  /**
   * Called with each piece of a model call's text as it is generated (see `TextDelta`), tagged
   * with the call's step. A step's pieces concatenate to that call's text; a step that is
   * generated again (its call failed and the run was retried from a checkpoint without it) starts
   * over at offset 0. Must not throw (a throw is ignored).
   */
  onTextDelta?: (delta: StepTextDelta) => void;
}

/** A piece of the text of the model call of one step. */
export interface StepTextDelta extends TextDelta {
  /** The step (1-based model call of the task, counted across resumes) the text belongs to. */
  step: number;
}

/** How a run ended. A failure is thrown as an `AgentryError` (e.g. `STEP_LIMIT`, `CANCELLED`, provider codes). */
export type AgentResult =
  | {
      status: "completed";
      /** Text of the final assistant message. */
      text: string;
      state: AgentState;
      /** Summed over every model call of the task, resumes included. */
      usage: Usage;
      /** Micro-USD the hooks charged over every model call of the task, resumes included. */
      costMicroUsd: number;
      /** Model calls of the task, resumes included. */
      steps: number;
      /** Messages the run added after its input (assistant turns and tool results); append them, after the user message, to the session. */
      newMessages: Message[];
    }
  | {
      status: "suspended";
      /** JSON-serialisable; pass it back as `state` to continue. */
      state: AgentState;
      suspensions: { call: ToolUseBlock; reason: string; data?: Record<string, unknown> }[];
      usage: Usage;
      costMicroUsd: number;
      steps: number;
    };

/** Text of the tool_result given when a journal says an earlier attempt of a non-idempotent call was interrupted. */
export const INTERRUPTED_TOOL_MESSAGE =
  "The previous attempt of this tool call was interrupted; its outcome is unknown and it was not re-run";

const ALLOW: ToolCallDecision = { type: "allow" };
const NEVER_ABORTED = new AbortController().signal;

/**
 * Runs the model ↔ tools loop until the model ends its turn, `stopWhen` says so, a hook
 * suspends a tool call (→ `suspended`), or the step limit is hit (→ throws `STEP_LIMIT`).
 *
 * Tool calls of one turn run concurrently; their results go back in call order in one user
 * message. A call whose result is already in the state is never run again, so resuming a
 * state, or retrying from a checkpoint, is safe.
 *
 * Throws `INVALID_INPUT` for empty or malformed messages, a conversation not ending with a user
 * message, a new message over `maxInputBytes`, or an invalid `state`.
 */
export async function runAgent(options: RunAgentOptions): Promise<AgentResult> {
  const maxSteps = positiveInt(options.maxSteps ?? 10, "maxSteps", "INVALID_CONFIG");
  const maxTokens = positiveInt(options.maxTokens ?? 1024, "maxTokens", "INVALID_CONFIG");
  const maxInputBytes = positiveInt(options.maxInputBytes ?? 256 * 1024, "maxInputBytes", "INVALID_CONFIG");
  const { model, tools, run } = options;
  const hooks = options.hooks ?? {};
  const signal = options.signal ?? NEVER_ABORTED;

  const state =
    options.state !== undefined
      ? parseAgentState(options.state)
      : initialState(options.messages, maxInputBytes);
  const inputLength = state.inputLength ?? 0;

  if (state.pending.length === 0 && state.messages.at(-1)?.role === "assistant") {
    // Already finished (e.g. a retry after the final checkpoint): nothing to do.
    return completed(state, inputLength);
  }

  if (state.recalled === undefined && options.recall !== undefined) {
    state.recalled = await recallMemories(options.recall, state.messages);
  }
  const system = systemWithMemories(options.system, state.recalled ?? []);
  const definitions = tools.definitions();

  let checkpoints: Promise<void> = Promise.resolve();
  /** Checkpoints never overlap, so a slower write can never land after a newer one. */
  const checkpoint = (): Promise<void> => {
    const next = checkpoints.then(() => hooks.onCheckpoint?.(structuredClone(state)));
    checkpoints = next.catch(() => undefined);
    return next;
  };

  const toolContext = (call: ToolUseBlock): ToolContext => ({
    taskId: run.taskId,
    tenant: run.tenant,
    userId: run.userId,
    sessionId: run.sessionId,
    toolUseId: call.id,
    signal,
    attributes: { ...run.attributes },
  });

  const runAllowed = async (call: ToolUseBlock): Promise<ToolResultBlock> => {
    const journal = options.journal;
    if (journal === undefined) return tools.execute(call, toolContext(call));
    const begun = await journal.begin(run, call);
    if (begun.status === "done") return begun.result;
    if (begun.status === "interrupted" && tools.get(call.name)?.idempotent !== true) {
      return { type: "tool_result", toolUseId: call.id, content: INTERRUPTED_TOOL_MESSAGE, isError: true };
    }
    const result = await tools.execute(call, toolContext(call));
    // A handler that returned a result did its work, even if the run was stopped meanwhile (e.g.
    // its attempt lost the job lock): record it, so the attempt that continues the task reports
    // the truth. A cancelled handler's error outcome is unknown: leave the claim open ("interrupted").
    if (!(signal.aborted && result.isError)) await journal.complete(run, call, result);
    else await journal.abandon?.(run, call);
    throwIfCancelled(signal);
    return result;
  };

  const resolveCall = async (pending: PendingToolCall): Promise<void> => {
    if (pending.result !== undefined) return;
    const started = performance.now();
    // A call the tool would refuse is the model's error to fix, not an action to judge or approve.
    const checked = await tools.check(pending.call);
    const info: ToolCallInfo = {
      run,
      step: state.step,
      call: pending.call,
      ...(pending.suspension === undefined ? {} : { previousSuspension: pending.suspension }),
      ...(checked.ok && checked.tool.destructive === true ? { destructive: true } : {}),
    };
    const decision =
      checked.ok && hooks.beforeToolCall !== undefined ? await hooks.beforeToolCall(info) : ALLOW;
    let result: ToolResultBlock;
    if (!checked.ok) {
      result = checked.result;
    } else {
      switch (decision.type) {
        case "suspend":
          pending.suspension = {
            reason: decision.reason,
            ...(decision.data === undefined ? {} : { data: decision.data }),
          };
          return;
        case "deny":
          result = {
            type: "tool_result",
            toolUseId: pending.call.id,
            content: `Denied by policy${decision.policy === undefined ? "" : ` ${decision.policy}`}: ${decision.reason}`,
            isError: true,
          };
          break;
        case "allow":
          result = await runAllowed(pending.call);
          break;
        default:
          // Fail closed on a decision this loop does not know.
          result = {
            type: "tool_result",
            toolUseId: pending.call.id,
            content: "Denied: the policy decision was not understood",
            isError: true,
          };
      }
    }
    throwIfCancelled(signal);
    pending.result = result;
    delete pending.suspension;
    await hooks.afterToolCall?.({ ...info, result, durationMs: performance.now() - started, decision });
    await checkpoint();
  };

  for (;;) {
    throwIfCancelled(signal);

    if (state.pending.length > 0) {
      // Tool calls whose results no model call could ever read are not run at all.
      if (state.step >= maxSteps && state.pending.some((p) => p.result === undefined))
        throw stepLimit(maxSteps, state);
      const outcomes = await Promise.allSettled(state.pending.map(resolveCall));
      const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
      if (failure !== undefined) throw failure.reason;
      const waiting = state.pending.filter((p) => p.result === undefined);
      if (waiting.length > 0) {
        await checkpoint();
        return {
          status: "suspended",
          state,
          suspensions: waiting.map((p) => ({
            call: p.call,
            reason: p.suspension?.reason ?? "suspended",
            ...(p.suspension?.data === undefined ? {} : { data: p.suspension.data }),
          })),
          usage: state.usage,
          costMicroUsd: state.costMicroUsd ?? 0,
          steps: state.step,
        };
      }
      // Not checkpointed on its own: the last checkpoint (every result in `pending`) resumes to
      // exactly this state, and the next one follows the model's answer.
      state.messages.push({ role: "user", content: state.pending.map((p) => p.result as ToolResultBlock) });
      state.pending = [];
    }

    if (state.step > 0 && options.stopWhen?.(state) === true) return completed(state, inputLength);
    if (state.step >= maxSteps) throw stepLimit(maxSteps, state);

    const step = state.step + 1;
    const request: ModelRequest = {
      ...(options.modelId === undefined ? {} : { model: options.modelId }),
      ...(system === undefined ? {} : { system }),
      messages: [...state.messages],
      ...(definitions.length === 0 ? {} : { tools: definitions }),
      maxTokens,
      ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
      ...(options.cache === undefined ? {} : { cache: options.cache }),
      signal: options.modelSignal ?? signal,
      ...(options.onTextDelta === undefined ? {} : { onTextDelta: textDeltasOf(step, options.onTextDelta) }),
      metadata: {
        taskId: run.taskId,
        tenant: run.tenant,
        userId: run.userId,
        sessionId: run.sessionId,
        step: String(step),
      },
    };
    try {
      const clamp = await hooks.beforeModelCall?.({ run, step, request });
      if (clamp?.maxTokens !== undefined) {
        if (!Number.isInteger(clamp.maxTokens) || clamp.maxTokens < 1) {
          throw new AgentryError(
            "INTERNAL",
            `beforeModelCall returned maxTokens ${clamp.maxTokens}; it must be a positive integer`,
          );
        }
        request.maxTokens = Math.min(request.maxTokens, clamp.maxTokens);
      }
    } catch (error) {
      // The call is not sent: a hook that reserved for it (a budget) gives it back.
      await hooks.onModelCallError?.({ run, step, request, error, sent: false }).catch(() => undefined);
      throw error;
    }

    const started = performance.now();
    let response: ModelResponse;
    try {
      response = await model.generate(request);
    } catch (error) {
      const charge = await hooks
        .onModelCallError?.({ run, step, request, error, sent: true })
        .catch(() => undefined);
      if (charge) state.costMicroUsd = (state.costMicroUsd ?? 0) + charge.costMicroUsd;
      throwIfCancelled(signal);
      throw error;
    }
    state.step = step;
    state.usage = addUsage(state.usage, response.usage);
    const charge = await hooks.afterModelCall?.({
      run,
      step,
      request,
      response,
      durationMs: performance.now() - started,
    });
    if (charge) state.costMicroUsd = (state.costMicroUsd ?? 0) + charge.costMicroUsd;

    const calls = response.content.filter((b): b is ToolUseBlock => b.type === "tool_use");
    const wantsTools = response.stopReason === "tool_use" && calls.length > 0;
    // A tool_use without a tool_result after it would make the conversation invalid for the next turn.
    const content = wantsTools ? [...response.content] : response.content.filter((b) => b.type === "text");
    if (content.length > 0) state.messages.push({ role: "assistant", content });
    state.pending = wantsTools ? calls.map((call) => ({ call })) : [];
    await checkpoint();
    if (!wantsTools) return completed(state, inputLength);
  }
}

function textDeltasOf(step: number, onTextDelta: (delta: StepTextDelta) => void): (delta: TextDelta) => void {
  return (delta) => {
    try {
      onTextDelta({ step, offset: delta.offset, text: delta.text });
    } catch {
      // A consumer's failure never stops the call.
    }
  };
}

/** The model still wants tools after `maxSteps` calls. Its last requests are left unrun in `pending`. */
function stepLimit(maxSteps: number, state: AgentState): AgentryError {
  return new AgentryError("STEP_LIMIT", `The agent did not finish within ${maxSteps} model calls`, {
    details: { maxSteps, steps: state.step, usage: state.usage },
  });
}

function completed(state: AgentState, inputLength: number): AgentResult {
  return {
    status: "completed",
    text: lastAssistantText(state.messages),
    state,
    usage: state.usage,
    costMicroUsd: state.costMicroUsd ?? 0,
    steps: state.step,
    newMessages: state.messages.slice(inputLength),
  };
}

function initialState(messages: Message[] | undefined, maxInputBytes: number): AgentState {
  if (messages === undefined || messages.length === 0) {
    throw new AgentryError("INVALID_INPUT", "messages must hold at least one message (the new user message)");
  }
  const parsed = agentStateSchema.shape.messages.safeParse(messages);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => `messages.${i.path.map(String).join(".")}: ${i.message}`);
    throw new AgentryError("INVALID_INPUT", `messages are not valid: ${fields.join("; ")}`, {
      details: { fields },
    });
  }
  const last = messages.at(-1) as Message;
  if (last.role !== "user") {
    throw new AgentryError("INVALID_INPUT", "The conversation must end with a user message");
  }
  const empty = typeof last.content === "string" ? last.content.trim() === "" : last.content.length === 0;
  if (empty) throw new AgentryError("INVALID_INPUT", "The user message is empty");
  const bytes = Buffer.byteLength(JSON.stringify(last.content));
  if (bytes > maxInputBytes) {
    throw new AgentryError(
      "INVALID_INPUT",
      `The user message is ${bytes} bytes; the limit is ${maxInputBytes}`,
      {
        details: { bytes, maxInputBytes },
      },
    );
  }
  const copy = parsed.data as Message[];
  return {
    version: 1,
    messages: copy,
    step: 0,
    usage: { ...ZERO_USAGE },
    pending: [],
    inputLength: copy.length,
  };
}

async function recallMemories(
  recall: NonNullable<RunAgentOptions["recall"]>,
  messages: Message[],
): Promise<string[]> {
  const lastUser = [...messages].reverse().find((m) => m.role === "user");
  const query = lastUser === undefined ? "" : textOf(lastUser).trim();
  if (query === "") return [];
  const hits = await recall.memory.search({
    namespace: recall.namespace,
    query,
    k: recall.k ?? 5,
    ...(recall.minScore === undefined ? {} : { minScore: recall.minScore }),
  });
  return hits.map((h) => h.text);
}

function textOf(message: Message): string {
  if (typeof message.content === "string") return message.content;
  return message.content
    .filter((b): b is TextBlock => b.type === "text")
    .map((b) => b.text)
    .join("\n");
}

function lastAssistantText(messages: Message[]): string {
  const last = [...messages].reverse().find((m) => m.role === "assistant");
  return last === undefined ? "" : textOf(last);
}

function throwIfCancelled(signal: AbortSignal): void {
  if (signal.aborted) throw new AgentryError("CANCELLED", "The run was cancelled", { cause: signal.reason });
}
