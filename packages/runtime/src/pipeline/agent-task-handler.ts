import type { Redis } from "ioredis";
import { trace } from "@opentelemetry/api";
import {
  AgentryError,
  redactSecretText,
  systemClock,
  tenantOwnedId,
  type AuditAppendOptions,
  type AuditEntryInput,
  type AuditHold,
  type AuditRecord,
  type AuditSink,
  type Clock,
} from "@agentry/core";
import {
  composeHooks,
  memoryNamespace,
  runAgent,
  type AgentHooks,
  type AgentState,
  type RunContext,
  type ToolJournal,
  type ToolRegistry,
} from "@agentry/agent";
import type { LanguageModel, Message } from "@agentry/llm";
import type { SessionLease, SessionStore, SessionTurns, VectorMemory } from "@agentry/memory";
import type { AgentTaskResult } from "../tasks/catalog.js";
import type { TaskExecution, TaskHandler } from "../worker/agent-worker.js";
import type { TaskOutcome } from "../worker/job-outcome.js";
import type { TaskProgress } from "../tasks/progress.js";
import { readCheckpoint, replaySteps, stepEntry, type Checkpoint } from "./step-log.js";
import { RedisToolJournal } from "./tool-journal.js";

/** Options for {@link createAgentTaskHandler}. */
export interface AgentTaskHandlerOptions {
  model: LanguageModel;
  tools: ToolRegistry;
  /** Hooks around model and tool calls: budget, governance, tracing, metrics. Run in order. */
  hooks?: AgentHooks[];
  redis: Redis;
  prefix: string;
  sessions?: SessionStore;
  /** Session turns: one task of a session at a time, in submit order. */
  turns?: SessionTurns;
  /** Recall memories of the user into the system prompt. */
  recall?: { memory: VectorMemory; k?: number };
  audit?: AuditSink;
  /** How long a started tool call may still record its result (its timeout plus a margin); see RedisToolJournal. @defaultValue 35_000 */
  toolClaimMs?: number;
  /**
   * Replicas a tool call's claim must reach before the tool runs, how long to wait for them and
   * the connection claims use; see RedisToolJournal's `waitReplicas`. @defaultValue off
   */
  toolClaimReplicas?: { replicas: number; timeoutMs?: number; redis?: Redis };
  /** Who writes the audit entries (the worker's name). */
  actor?: string;
  /** Longest model text kept as a decision's reasoning in the audit, in characters. @defaultValue 2_000 */
  maxAuditedReasoning?: number;
  /** @defaultValue a short helpful-assistant prompt */
  system?: string;
  /** @defaultValue 10 */
  maxSteps?: number;
  /** @defaultValue 1024 */
  maxTokens?: number;
  /** Session lease while a task runs (renewed); a dead holder's lease lapses after it. @defaultValue 30_000 */
  sessionLeaseMs?: number;
  /** How long a task waits for an approval when the approval does not say. @defaultValue 24 h */
  approvalWaitMs?: number;
  /** Current trace id, for audit entries. @defaultValue the active OpenTelemetry span's */
  traceId?: () => string | undefined;
  _internal?: { clock?: Clock };
}

/**
 * The `once` name of a task's one-per-task audit entry (`request`, `response`, `failure`): a
 * retried attempt, or the worker recording a task BullMQ failed, meets the same marker.
 */
export function taskAuditOnce(
  kind: "request" | "response" | "failure",
  tenant: string,
  taskId: string,
): string {
  return `${kind}:${tenantOwnedId(tenant, "task", taskId)}`;
}

/** The default system prompt. */
export const DEFAULT_SYSTEM_PROMPT =
  "You are a helpful assistant. Use the tools when they help; a tool result that is an error explains why the action did not happen.";

/**
 * The task handler the worker runs: session turn, history, the agent loop with its hooks and
 * checkpoints, and the session append at the end. Pending approvals and busy sessions park the
 * job (no slot held); every step is checkpointed so a retry or a resume continues where the last
 * attempt stopped and never re-runs a finished tool call.
 */
export function createAgentTaskHandler(options: AgentTaskHandlerOptions): TaskHandler {
  const clock = options._internal?.clock ?? systemClock;
  const leaseMs = options.sessionLeaseMs ?? 30_000;
  const toolJournal = new RedisToolJournal({
    redis: options.redis,
    prefix: options.prefix,
    ...(options.toolClaimMs ? { claimMs: options.toolClaimMs } : {}),
    ...(options.toolClaimReplicas
      ? {
          waitReplicas: options.toolClaimReplicas.replicas,
          ...(options.toolClaimReplicas.timeoutMs !== undefined
            ? { waitTimeoutMs: options.toolClaimReplicas.timeoutMs }
            : {}),
          ...(options.toolClaimReplicas.redis ? { claimRedis: options.toolClaimReplicas.redis } : {}),
        }
      : {}),
  });
  const maxReasoning = options.maxAuditedReasoning ?? 2_000;

  return async (ex: TaskExecution): Promise<TaskOutcome> => {
    const p = ex.payload;
    // Sessions, once-keys and memory are the tenant's: ids are qualified before any store sees them.
    const session = tenantOwnedId(p.tenant, "session", p.sessionId);
    const task = tenantOwnedId(p.tenant, "task", ex.taskId);
    const traceId = options.traceId?.() ?? activeTraceId();
    const run: RunContext = {
      taskId: ex.taskId,
      tenant: p.tenant,
      userId: p.userId,
      sessionId: p.sessionId,
      // The task id is the BullMQ job id; governance records it on approvals.
      attributes: { jobId: ex.taskId, ...(traceId ? { traceId } : {}) },
      fence: ex.fence,
    };
    // Every entry of the attempt is fenced by its job lock; `once` keeps an entry that a
    // retried attempt reaches again (request, response, failure) to one per task.
    const audit = (record: AuditRecord, once?: Parameters<typeof taskAuditOnce>[0]) => {
      const entry: AuditEntryInput = {
        taskId: run.taskId,
        tenant: run.tenant,
        userId: run.userId,
        sessionId: run.sessionId,
        ...(traceId ? { traceId } : {}),
        ...(options.actor ? { actor: options.actor } : {}),
        ...record,
      };
      const appendOptions: AuditAppendOptions = {
        fence: ex.fence,
        ...(once ? { once: taskAuditOnce(once, p.tenant, ex.taskId) } : {}),
      };
      return options.audit?.append(entry, appendOptions);
    };
    // The attempt's fenced audit entries are held and written with its next step (one call).
    const hold = options.audit?.hold?.(ex.fence);
    // The step log first; a checkpoint kept whole in the job's data is from an older version.
    const logged = replaySteps(ex.steps);
    let checkpoint = logged ?? readCheckpoint(ex.checkpoint);
    const steps = new StepWriter(ex, hold, logged);
    const maxSteps = p.maxSteps ?? options.maxSteps ?? 10;

    if (checkpoint === undefined)
      await audit(
        { type: "request", data: { prompt: p.prompt, model: p.model, submittedAt: p.submittedAt } },
        "request",
      );

    // 1. The session's turn. A run that already finished ended its turn (release is idempotent,
    // done again below): its completion was lost (e.g. its lock lapsed while Redis was away), so
    // it only reports the result again, and must not wait for a turn it can never get back.
    const finished =
      checkpoint?.agent !== undefined &&
      checkpoint.agent.pending.length === 0 &&
      checkpoint.agent.messages.at(-1)?.role === "assistant";
    let lease = checkpoint?.lease;
    if (options.turns && !finished) {
      lease = await takeTurn(options, ex, session, lease, leaseMs);
      if (!lease) {
        await steps.write({
          progress: { step: checkpoint?.agent?.step ?? 0, phase: "parked", reason: "session_busy" },
        });
        await hold?.release();
        return { type: "park", parked: { reason: "session_busy", until: clock.now() + 30_000 } };
      }
    }
    const renewal =
      lease && options.turns && !finished ? keepRenewed(options.turns, lease, leaseMs) : undefined;

    try {
      // 2. History and the checkpoint the run starts from.
      if (checkpoint === undefined || checkpoint.agent === undefined) {
        const history = options.sessions ? await options.sessions.load(session) : [];
        checkpoint = { v: 1, historyLength: history.length, ...(lease ? { lease } : {}) };
        const messages: Message[] = [...history, { role: "user", content: p.prompt }];
        checkpoint.agent = {
          version: 1,
          messages,
          step: 0,
          usage: { input: 0, output: 0, cacheCreationInput: 0, cacheReadInput: 0 },
          pending: [],
        };
        await steps.write({ state: checkpoint, progress: nextProgress(checkpoint.agent, maxSteps) });
      } else if (lease && checkpoint.lease?.token !== lease.token) {
        checkpoint = { ...checkpoint, lease };
        await steps.write({ state: checkpoint });
      }
      const base = checkpoint;

      // Every write of a step goes in one fenced call: the checkpoint with the audit entries
      // held since the last one and the progress of what comes next. A model call is preceded by
      // such a write (the checkpoint before it, or this progress write), and a tool by the write
      // of its verdict (the journal's claim below waits for it), so an attempt that lost its
      // lock makes no further model or tool call.
      const progressHooks: AgentHooks = {
        async beforeModelCall({ step }) {
          await steps.write({ progress: { step, phase: "model" } });
        },
        beforeToolCall({ step, call }) {
          steps.stage({ step, phase: "tool", tool: call.name });
          return Promise.resolve({ type: "allow" as const });
        },
        async onCheckpoint(state) {
          await steps.write({ state: { ...base, agent: state }, progress: nextProgress(state, maxSteps) });
        },
      };
      const journal: ToolJournal = {
        begin: async (run, call) => {
          await steps.write({});
          const begun = await toolJournal.begin(run, call);
          // One line per run of a tool, outside Redis, where an operator counts side effects: a
          // first run on its claim, or the run again of an idempotent tool whose earlier claimant
          // never recorded a result (runAgent reports that call interrupted for any other tool).
          const rerun = begun.status === "interrupted" && options.tools.get(call.name)?.idempotent === true;
          if (begun.status === "fresh" || rerun)
            ex.log.info(
              { event: "tool-run", tool: call.name, toolUseId: call.id, rerun },
              `tool ${call.name} runs`,
            );
          return begun;
        },
        complete: (run, call, result) => toolJournal.complete(run, call, result),
        abandon: (run, call) => toolJournal.abandon(run, call),
      };
      // The decision entry runs after every other hook: the budget settles a call the provider
      // billed even when this fenced entry is refused.
      const decisionHooks: AgentHooks = {
        async afterModelCall({ step, response }) {
          const toolUses = response.content
            .filter((b) => b.type === "tool_use")
            .map((b) => ({ id: b.id, name: b.name, input: b.input }));
          const text = response.content.flatMap((b) => (b.type === "text" ? [b.text] : [])).join("\n");
          const bounded =
            text.length > maxReasoning
              ? `${text.slice(0, maxReasoning)}… [${text.length - maxReasoning} more chars]`
              : text;
          const reasoning = redactSecretText(bounded);
          await audit({
            type: "decision",
            data: {
              step,
              text: reasoning,
              toolUses,
              stopReason: response.stopReason,
              usage: response.usage,
              model: response.model,
            },
          });
        },
      };

      const hasState = base.agent !== undefined && (base.agent.step > 0 || base.agent.pending.length > 0);
      const result = await runAgent({
        model: options.model,
        tools: options.tools,
        system: p.system ?? options.system ?? DEFAULT_SYSTEM_PROMPT,
        ...(hasState ? { state: base.agent } : { messages: base.agent?.messages ?? [] }),
        run,
        hooks: composeHooks(progressHooks, ...(options.hooks ?? []), decisionHooks),
        journal,
        maxSteps,
        maxTokens: p.maxTokens ?? options.maxTokens ?? 1024,
        ...(p.model ? { modelId: p.model } : {}),
        signal: ex.signal,
        modelSignal: followUnlessLockLost(ex.signal),
        // The model's text, live, into the task's stream (batched and fenced by the worker).
        onTextDelta: (delta) => ex.publishText(delta),
        ...(options.recall
          ? {
              recall: {
                memory: options.recall.memory,
                namespace: memoryNamespace(p.tenant, p.userId),
                k: options.recall.k ?? 3,
              },
            }
          : {}),
      });

      if (result.status === "suspended") {
        const approvalIds = result.suspensions.map((s) => String(s.data?.approvalId ?? "")).filter(Boolean);
        const expiries = result.suspensions
          .map((s) => Number(s.data?.expiresAt))
          .filter((n) => Number.isFinite(n) && n > 0);
        const until =
          expiries.length > 0
            ? Math.min(...expiries) + 1_000
            : clock.now() + (options.approvalWaitMs ?? 24 * 3600_000);
        // Keep the session's turn while waiting: later tasks of the session must not overtake.
        renewal?.stop();
        if (lease && options.turns)
          await options.turns.renew(lease, Math.max(until - clock.now(), 0) + 5 * 60_000);
        await steps.write({
          state: { ...base, agent: result.state },
          progress: { step: result.steps, phase: "awaiting_approval", approvalIds },
        });
        const tools = result.suspensions.map((s) => s.call.name);
        return { type: "park", parked: { reason: "approval", approvalIds, until, tools } };
      }

      // 3. Completed: append to the session once, end the turn, wake the next task.
      const added = result.state.messages.slice(base.historyLength);
      await options.sessions?.append(session, added, { fence: ex.fence, once: `history:${task}` });
      const taskResult: AgentTaskResult = {
        text: result.text,
        steps: result.steps,
        usage: result.usage,
        costMicroUsd: result.costMicroUsd,
        model: p.model ?? options.model.defaultModel,
        finishedAt: clock.now(),
      };
      await audit(
        {
          type: "response",
          data: {
            text: result.text,
            steps: result.steps,
            usage: result.usage,
            costMicroUsd: taskResult.costMicroUsd,
          },
        },
        "response",
      );
      await steps.write({ progress: { step: result.steps, phase: "done" } });
      await endTurn(options, lease, ex);
      // No attempt of the task can write again once it is completed (every entry, the session
      // append and every tool claim are fenced by its job lock), so its request and response
      // markers, its session history marker and the journal entries of its tool calls need not
      // wait out their TTL.
      const onceKey = options.audit?.onceKey?.bind(options.audit);
      const drop = [
        ...(onceKey
          ? [
              onceKey(taskAuditOnce("request", p.tenant, ex.taskId)),
              onceKey(taskAuditOnce("response", p.tenant, ex.taskId)),
            ]
          : []),
        ...(options.sessions?.onceKey ? [options.sessions.onceKey(session, `history:${task}`)] : []),
        ...toolUseIds(added).map((id) => toolJournal.entryKey(run, id)),
      ];
      return {
        type: "completed",
        result: taskResult,
        ...(drop.length > 0 ? { dropWhenCompleted: drop } : {}),
      };
    } catch (thrown) {
      // Stopped for a reason that is not the task's (the worker shuts down and hands the task
      // back): the task goes on elsewhere from its checkpoint, so it keeps its session turn and
      // nothing is audited as ended.
      if (ex.signal.aborted && !AgentryError.isInstance(ex.signal.reason)) throw thrown;
      const err = AgentryError.from(
        ex.signal.aborted && AgentryError.isInstance(ex.signal.reason) ? ex.signal.reason : thrown,
      );
      // Another attempt owns the task now: this one writes nothing more, not even its failure.
      if (err.code === "LOCK_LOST") throw err;
      if (err.code === "BUDGET_CONTENDED") {
        await steps.write({
          progress: { step: checkpoint?.agent?.step ?? 0, phase: "parked", reason: "budget_contended" },
        });
        return {
          type: "park",
          parked: { reason: "budget_contended", until: clock.now() + (err.retryAfterMs ?? 1_000) },
        };
      }
      // The task ends here (also when a retryable error used up the last attempt): audit it, free
      // the session. A provider's 429 and Redis being unavailable use up no attempt (the worker
      // waits them out), so they end nothing.
      const ends =
        !err.retryable ||
        err.code === "CANCELLED" ||
        (ex.finalAttempt && err.code !== "PROVIDER_RATE_LIMITED" && err.code !== "REDIS_UNAVAILABLE");
      if (ends) {
        await Promise.resolve(
          audit({ type: "failure", data: { code: err.code, message: err.message } }, "failure"),
        ).catch(() => undefined);
        await steps.write({}).catch(() => undefined);
        await endTurn(options, lease, ex);
      }
      throw err;
    } finally {
      renewal?.stop();
      // Whatever is still held (an attempt that stopped between steps) is written on its own.
      await hold?.release().catch(() => undefined);
    }
  };
}

/**
 * The progress of what follows a checkpoint of `state`, written with it: the next model call
 * when every tool result is in; none while a tool call waits (its verdict's write carries it)
 * or when the run is done.
 */
function nextProgress(state: AgentState | undefined, maxSteps: number): TaskProgress | undefined {
  if (!state || state.pending.some((p) => p.result === undefined)) return undefined;
  if (state.pending.length === 0 && state.messages.at(-1)?.role === "assistant") return undefined;
  return state.step < maxSteps ? { step: state.step + 1, phase: "model" } : undefined;
}

/**
 * One attempt's step writes, in order, each one fenced call (`TaskExecution.commitStep`): what
 * changed in the checkpoint since the step log's last entry, the audit entries the attempt holds,
 * and progress not shown yet (staged progress goes with the next write). A write with nothing
 * in it is skipped.
 */
class StepWriter {
  private readonly ex: TaskExecution;
  private readonly hold: AuditHold | undefined;
  /** What the step log replays to. */
  private logged: Checkpoint | undefined;
  private shown: string | undefined;
  private staged: TaskProgress | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(ex: TaskExecution, hold: AuditHold | undefined, logged: Checkpoint | undefined) {
    this.ex = ex;
    this.hold = hold;
    this.logged = logged;
  }

  /** Progress written with the next write, unless a newer one replaces it first. */
  stage(progress: TaskProgress): void {
    this.staged = progress;
  }

  write(step: { state?: Checkpoint; progress?: TaskProgress | undefined }): Promise<void> {
    const next = this.chain.then(async () => {
      const entry = step.state ? stepEntry(this.logged, step.state) : undefined;
      const wanted = step.progress ?? this.staged;
      const progress = wanted && JSON.stringify(wanted) !== this.shown ? wanted : undefined;
      this.staged = undefined;
      if (!entry && !progress && (this.hold?.size ?? 0) === 0) return;
      await this.ex.commitStep({
        ...(entry ? { entry, reset: entry.t === "base" } : {}),
        ...(progress ? { progress } : {}),
        ...(this.hold ? { audit: this.hold } : {}),
      });
      if (entry && step.state) this.logged = step.state;
      if (progress) this.shown = JSON.stringify(progress);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }
}

/**
 * A signal that follows `signal` except when it aborts for a lost lock: a model call in flight
 * then finishes and its billed usage is settled (the ledger must equal what the provider
 * billed); the run stops at its next fenced write.
 */
function followUnlessLockLost(signal: AbortSignal): AbortSignal {
  const controller = new AbortController();
  const follow = () => {
    if (!(AgentryError.isInstance(signal.reason) && signal.reason.code === "LOCK_LOST"))
      controller.abort(signal.reason);
  };
  if (signal.aborted) follow();
  else signal.addEventListener("abort", follow, { once: true });
  return controller.signal;
}

function activeTraceId(): string | undefined {
  const ctx = trace.getActiveSpan()?.spanContext();
  return ctx && ctx.traceId !== "00000000000000000000000000000000" ? ctx.traceId : undefined;
}

async function takeTurn(
  options: AgentTaskHandlerOptions,
  ex: TaskExecution,
  sessionId: string,
  saved: SessionLease | undefined,
  leaseMs: number,
): Promise<SessionLease | undefined> {
  const taskId = ex.taskId;
  const turns = options.turns;
  if (!turns) return undefined;
  if (saved && saved.sessionId === sessionId && (await turns.renew(saved, leaseMs))) return saved;
  const lease = await turns.tryAcquire(sessionId, taskId, leaseMs);
  if (lease) return lease;
  // A task its producer did not register in the session's order (a client without session
  // order) joins it now, at the end: idempotent for a task already in it.
  await turns.enqueue(sessionId, taskId);
  const head = await turns.head(sessionId);
  if (head === taskId) return (await turns.tryAcquire(sessionId, taskId, leaseMs)) ?? undefined;
  // The head may be a task that no longer exists (removed, or its submit failed half-way).
  if (head && head !== taskId && !(await ex.isLive(head))) {
    await turns.remove(sessionId, head);
    return (await turns.tryAcquire(sessionId, taskId, leaseMs)) ?? undefined;
  }
  return undefined;
}

/** Ends the session's turn (fenced: a stale attempt cannot end the new attempt's turn) and wakes the next task. */
async function endTurn(
  options: AgentTaskHandlerOptions,
  lease: SessionLease | undefined,
  ex: TaskExecution,
): Promise<void> {
  if (!lease || !options.turns) return;
  if (!(await options.turns.release(lease, { fence: ex.fence }))) return;
  const next = await options.turns.head(lease.sessionId);
  if (next) await ex.wake(next);
}

function keepRenewed(turns: SessionTurns, lease: SessionLease, leaseMs: number): { stop(): void } {
  const timer = setInterval(
    () => {
      void turns.renew(lease, leaseMs).catch(() => undefined);
    },
    Math.max(1_000, Math.floor(leaseMs / 3)),
  );
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** The ids of the tool calls in `messages` (the assistants' tool_use blocks), in order. */
function toolUseIds(messages: readonly Message[]): string[] {
  return messages.flatMap((m) =>
    m.role === "assistant" && Array.isArray(m.content)
      ? m.content.flatMap((b) => (b.type === "tool_use" ? [b.id] : []))
      : [],
  );
}
