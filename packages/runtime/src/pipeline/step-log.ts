import { AgentryError } from "@agentry/core";
import { parseAgentState, type AgentState, type PendingToolCall } from "@agentry/agent";
import type { Message, ToolResultBlock, Usage } from "@agentry/llm";
import type { SessionLease } from "@agentry/memory";

/** What an attempt continues from: the agent's state and the session it runs in. */
export interface Checkpoint {
  v: 1;
  /** Messages of the session history the run started from (not appended again). */
  historyLength: number;
  lease?: SessionLease;
  agent?: AgentState;
  /**
   * Cost of earlier attempts, written by checkpoints from before the agent state carried it;
   * read once into `agent.costMicroUsd`.
   */
  costMicroUsd?: number;
}

/**
 * One entry of a task's step log. `base` starts the log (the whole state, once per task or after
 * a change that is not an append); `step` holds only what changed since the entry before it:
 * the messages added, the pending tool calls' new results, the counters. So the bytes a step
 * writes grow with the step, not with the conversation.
 */
export type StepEntry =
  | { t: "base"; historyLength: number; lease?: SessionLease; agent: AgentState }
  | {
      t: "step";
      /** Messages added after the previous entry's. */
      m?: Message[];
      /** The first added message is the previous entry's tool results (not written twice). */
      fold?: true;
      step: number;
      usage: Usage;
      cost?: number;
      /** The pending tool calls, when they are new (a new model turn). */
      pending?: PendingToolCall[];
      /** Changes to the previous pending calls, by index: a result, a suspension (null: cleared). */
      calls?: { i: number; result?: ToolResultBlock; suspension?: PendingToolCall["suspension"] | null }[];
      recalled?: string[];
      /** `inputLength`, when it changed (a run started from messages sets it). */
      input?: number;
      lease?: SessionLease;
    };

/**
 * The entry that takes the log from `prev` (what it replays to now, undefined when empty) to
 * `next`; undefined when nothing changed. A base when there is no previous entry or the messages
 * did not only grow.
 */
export function stepEntry(prev: Checkpoint | undefined, next: Checkpoint): StepEntry | undefined {
  const agent = next.agent;
  if (!agent) return undefined;
  const before = prev?.agent;
  if (
    !prev ||
    !before ||
    agent.messages.length < before.messages.length ||
    prev.historyLength !== next.historyLength
  )
    return {
      t: "base",
      historyLength: next.historyLength,
      ...(next.lease ? { lease: next.lease } : {}),
      agent,
    };
  let added = agent.messages.slice(before.messages.length);
  let fold = false;
  const results = before.pending.map((p) => p.result);
  if (
    added.length > 0 &&
    before.pending.length > 0 &&
    results.every((r) => r !== undefined) &&
    same(added[0], { role: "user", content: results })
  ) {
    fold = true;
    added = added.slice(1);
  }
  const samePending =
    agent.pending.length === before.pending.length &&
    agent.pending.every((p, i) => p.call.id === before.pending[i]?.call.id);
  const calls: NonNullable<Extract<StepEntry, { t: "step" }>["calls"]> = [];
  if (samePending)
    agent.pending.forEach((p, i) => {
      const old = before.pending[i] as PendingToolCall;
      const change: (typeof calls)[number] = { i };
      if (!same(p.result, old.result) && p.result !== undefined) change.result = p.result;
      if (!same(p.suspension, old.suspension)) change.suspension = p.suspension ?? null;
      if (Object.keys(change).length > 1) calls.push(change);
    });
  const entry: StepEntry = {
    t: "step",
    ...(added.length > 0 ? { m: added } : {}),
    ...(fold ? { fold: true } : {}),
    step: agent.step,
    usage: agent.usage,
    ...(agent.costMicroUsd === undefined ? {} : { cost: agent.costMicroUsd }),
    ...(samePending ? {} : { pending: agent.pending }),
    ...(calls.length > 0 ? { calls } : {}),
    ...(same(agent.recalled, before.recalled) ? {} : { recalled: agent.recalled ?? [] }),
    ...(agent.inputLength === before.inputLength ? {} : { input: agent.inputLength ?? 0 }),
    ...(next.lease && !same(next.lease, prev.lease) ? { lease: next.lease } : {}),
  };
  const unchanged =
    !entry.m &&
    !fold &&
    samePending &&
    calls.length === 0 &&
    !("recalled" in entry) &&
    !("input" in entry) &&
    !("lease" in entry) &&
    agent.step === before.step &&
    agent.costMicroUsd === before.costMicroUsd &&
    same(agent.usage, before.usage);
  return unchanged ? undefined : entry;
}

/** Applies `entry` to `prev` (what the log replayed to so far). Throws `INVALID_INPUT` for an entry without a base before it. */
export function applyStep(prev: Checkpoint | undefined, entry: StepEntry): Checkpoint {
  if (entry.t === "base")
    return {
      v: 1,
      historyLength: entry.historyLength,
      ...(entry.lease ? { lease: entry.lease } : {}),
      agent: structuredClone(entry.agent),
    };
  const before = prev?.agent;
  if (!prev || !before)
    throw new AgentryError("INVALID_INPUT", "Step log entry without a base entry before it");
  const messages = [...before.messages];
  if (entry.fold)
    messages.push({ role: "user", content: before.pending.map((p) => p.result as ToolResultBlock) });
  messages.push(...(entry.m ?? []));
  const pending = entry.pending ?? before.pending.map((p) => ({ ...p }));
  for (const c of entry.calls ?? []) {
    const p = pending[c.i];
    if (!p)
      throw new AgentryError(
        "INVALID_INPUT",
        `Step log entry changes pending call ${c.i}, which does not exist`,
      );
    if (c.result !== undefined) p.result = c.result;
    if (c.suspension === null) delete p.suspension;
    else if (c.suspension !== undefined) p.suspension = c.suspension;
  }
  const agent: AgentState = {
    ...before,
    messages,
    step: entry.step,
    usage: entry.usage,
    pending,
    ...(entry.cost === undefined ? {} : { costMicroUsd: entry.cost }),
    ...(entry.recalled === undefined ? {} : { recalled: entry.recalled }),
    ...(entry.input === undefined ? {} : { inputLength: entry.input }),
  };
  return { ...prev, ...(entry.lease ? { lease: entry.lease } : {}), agent };
}

/**
 * The checkpoint a step log replays to (undefined for an empty log); the agent state is checked
 * with `parseAgentState`. Throws `INVALID_INPUT` for a log that does not replay.
 */
export function replaySteps(entries: readonly unknown[]): Checkpoint | undefined {
  let state: Checkpoint | undefined;
  for (const entry of entries) {
    const t = (entry as { t?: unknown } | null)?.t;
    if (t !== "base" && t !== "step")
      throw new AgentryError("INVALID_INPUT", "Step log entry is not a base or a step");
    state = applyStep(state, entry as StepEntry);
  }
  return state?.agent ? { ...state, agent: parseAgentState(state.agent) } : state;
}

/** A checkpoint kept whole in the job's data, as versions before the step log wrote it. */
export function readCheckpoint(value: unknown): Checkpoint | undefined {
  if (typeof value !== "object" || value === null || (value as { v?: unknown }).v !== 1) return undefined;
  const { costMicroUsd, ...c } = value as Checkpoint;
  if (!c.agent) return c;
  const agent = parseAgentState(c.agent);
  // An older checkpoint kept the cost beside the state: carry it into the state.
  if (agent.costMicroUsd === undefined && costMicroUsd !== undefined) agent.costMicroUsd = costMicroUsd;
  return { ...c, agent };
}

function same(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}
