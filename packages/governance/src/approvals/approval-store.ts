import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import {
  AgentryError,
  awaitReplicas,
  defineScripts,
  keySpace,
  systemClock,
  type Clock,
  type KeySpace,
} from "@agentry/core";
import type { AuditLog } from "../audit/audit-log.js";
import type { Action } from "../policies/types.js";
import { verifyDecision, type ApproverKeys } from "./signing.js";
import type {
  ApprovalDecision,
  ApprovalRecord,
  ApprovalResolvedEvent,
  ApprovalStatus,
  DecideResult,
  SignedDecision,
} from "./types.js";

const scripts = defineScripts<{
  requestApproval: (
    keys: [record: string, pending: string, all: string],
    args: [id: string, expiresAt: number, createdAt: number, ...fields: string[]],
  ) => [number, string?];
  decideApproval: (
    keys: [record: string, pending: string, resolved: string],
    args: [id: string, approver: string, outcome: string, decision: string, now: number, channel: string],
  ) => [string, ...(string | number)[]];
  expireApproval: (
    keys: [record: string, pending: string, resolved: string],
    args: [id: string, now: number, channel: string],
  ) => [string, string?];
  attachApprovalJob: (keys: [record: string], args: [jobId: string]) => number;
  acknowledgeApproval: (
    keys: [record: string, resolved: string, all: string],
    args: [id: string, now: number, retentionMs: number],
  ) => number;
  cancelApproval: (
    keys: [record: string, pending: string, all: string],
    args: [id: string, now: number, retentionMs: number, reason: string],
  ) => number;
}>(import.meta.url, {
  requestApproval: "./request-approval-3.lua",
  decideApproval: "./decide-approval-3.lua",
  expireApproval: "./expire-approval-3.lua",
  attachApprovalJob: "./attach-approval-job-1.lua",
  acknowledgeApproval: "./acknowledge-approval-3.lua",
  cancelApproval: "./cancel-approval-3.lua",
});

/** The approval id for one tool call of one task: deterministic, so a retried step finds its approval. */
export function approvalIdFor(taskId: string, toolUseId: string): string {
  return `apr_${createHash("sha256").update(`${taskId}\n${toolUseId}`).digest("hex").slice(0, 32)}`;
}

/** Options for {@link ApprovalStore}. */
export interface ApprovalStoreOptions {
  /** A command connection (not a subscriber). */
  redis: Redis;
  /** @defaultValue `agentry` */
  prefix?: string;
  /** @defaultValue the system clock */
  clock?: Clock;
  /** How long a consumed (acknowledged) approval is kept before its record expires. @defaultValue 30 days */
  retentionMs?: number;
  /**
   * Enrolled approvers' public keys. When given, `decide` refuses a decision whose signature
   * does not verify. When absent, signatures are stored unchecked (the resume check still runs).
   */
  approverKeys?: ApproverKeys;
  /**
   * Makes the dedicated connection `subscribe` listens on.
   * @defaultValue `redis.duplicate()`
   */
  subscriber?: () => Redis;
  /**
   * When given, `tryDecide`/`decide` audit every accepted vote (`approval_vote`) and refusal
   * (`approval_refused`), with `actor: "approver:<name>"`. Resolutions and expiries are audited
   * once, by the task that applies them (`approval_decided`, `approval_expired` from the
   * governance hooks), after it verified the signatures again. The decision is recorded first; if the audit append then
   * fails, the call throws `AUDIT_FAILED` (the decision stands).
   */
  audit?: AuditLog;
  /**
   * With `replicas` above 0, a decision returns only once that many Redis replicas hold it (Redis
   * `WAIT` on the record's master, at most `timeoutMs`, default 1000): a failover to a replica
   * then cannot lose a decision its approver was told is recorded. A shortfall throws retryable
   * `REDIS_UNAVAILABLE` after the decision is audited (it stands on the master).
   * @defaultValue off
   */
  waitReplicas?: { replicas: number; timeoutMs?: number };
}

/** What {@link ApprovalStore.request} needs. */
export interface ApprovalRequest {
  /** @defaultValue `approvalIdFor(taskId, toolUseId)` */
  id?: string;
  taskId: string;
  jobId?: string;
  toolUseId: string;
  action: Action;
  approvers: string[];
  quorum: number;
  ttlMs: number;
  reason: string;
}

/**
 * Approval records in Redis. Keys: `{prefix}:approval:{id}` (hash), `{prefix}:approvals:pending`
 * (zset by expiry), `{prefix}:approvals:all` (zset by creation), `{prefix}:approvals:resolved`
 * (zset by resolution time: resolved and not yet acknowledged by the resumed task). Resolutions
 * are published on `{prefix}:approvals:events` from inside the deciding script, so Redis state
 * and the event never disagree; pub/sub is only the wake-up, {@link unacknowledgedResolved} is the truth.
 */
export class ApprovalStore {
  readonly redis: Redis;
  readonly keys: KeySpace;
  /** The pub/sub channel of {@link ApprovalResolvedEvent}s. */
  readonly channel: string;
  private readonly clock: Clock;
  private readonly approverKeys: ApproverKeys | undefined;
  private readonly makeSubscriber: () => Redis;
  private readonly retentionMs: number;
  private readonly audit: AuditLog | undefined;
  private readonly waitReplicas: ApprovalStoreOptions["waitReplicas"];

  constructor(options: ApprovalStoreOptions) {
    this.redis = options.redis;
    this.keys = keySpace(options.prefix);
    this.channel = this.keys.key("approvals", "events");
    this.clock = options.clock ?? systemClock;
    this.approverKeys = options.approverKeys;
    this.makeSubscriber = options.subscriber ?? (() => options.redis.duplicate());
    this.retentionMs = options.retentionMs ?? 30 * 24 * 3_600_000;
    this.audit = options.audit;
    this.waitReplicas =
      options.waitReplicas && options.waitReplicas.replicas > 0 ? options.waitReplicas : undefined;
  }

  private recordKey(id: string): string {
    return this.keys.key("approval", id);
  }
  private get pendingKey(): string {
    return this.keys.key("approvals", "pending");
  }
  private get allKey(): string {
    return this.keys.key("approvals", "all");
  }
  private get resolvedKey(): string {
    return this.keys.key("approvals", "resolved");
  }

  /** Creates the approval (or finds the existing one with the same id). */
  async request(req: ApprovalRequest): Promise<{ record: ApprovalRecord; created: boolean }> {
    if (!Number.isInteger(req.quorum) || req.quorum < 1)
      throw new AgentryError("INVALID_INPUT", "quorum must be an integer >= 1");
    if (req.approvers.length === 0)
      throw new AgentryError("INVALID_INPUT", "an approval needs at least one approver");
    if (!(req.ttlMs > 0)) throw new AgentryError("INVALID_INPUT", "ttlMs must be > 0");
    const id = req.id ?? approvalIdFor(req.taskId, req.toolUseId);
    const now = this.clock.now();
    const expiresAt = now + req.ttlMs;
    const fields: Record<string, string> = {
      id,
      taskId: req.taskId,
      toolUseId: req.toolUseId,
      action: JSON.stringify(req.action),
      approvers: JSON.stringify(req.approvers),
      quorum: String(req.quorum),
      expiresAt: String(expiresAt),
      status: "pending",
      decisions: "[]",
      createdAt: String(now),
      reason: req.reason,
      ...(req.jobId ? { jobId: req.jobId } : {}),
    };
    const reply = await scripts.requestApproval(
      this.redis,
      [this.recordKey(id), this.pendingKey, this.allKey],
      [id, expiresAt, now, ...Object.entries(fields).flat()],
    );
    const record = await this.get(id);
    if (!record) throw new AgentryError("INTERNAL", `approval ${id} vanished right after creation`);
    return { record, created: reply[0] === 1 };
  }

  /** Records the job that waits on this approval (the event then names it). */
  async attachJob(id: string, jobId: string): Promise<void> {
    if ((await scripts.attachApprovalJob(this.redis, [this.recordKey(id)], [jobId])) !== 1)
      throw notFound(id);
  }

  /** The record, or `undefined` when there is none. */
  async get(id: string): Promise<ApprovalRecord | undefined> {
    const hash = await this.redis.hgetall(this.recordKey(id));
    return hash.id ? parseRecord(hash) : undefined;
  }

  /** The record; `NOT_FOUND` when there is none. */
  async require(id: string): Promise<ApprovalRecord> {
    const record = await this.get(id);
    if (!record) throw notFound(id);
    return record;
  }

  /**
   * Approvals newest first. `status: "pending"` reads the pending index; otherwise the
   * index of every approval (filtered). @defaultValue limit 100
   */
  async list(options: { status?: ApprovalStatus; limit?: number } = {}): Promise<ApprovalRecord[]> {
    const limit = options.limit ?? 100;
    const ids =
      options.status === "pending"
        ? await this.redis.zrange(this.pendingKey, 0, String(limit - 1))
        : await this.redis.zrevrange(this.allKey, 0, options.status ? -1 : limit - 1);
    const records = await this.getMany(ids);
    return records.filter((r) => !options.status || r.status === options.status).slice(0, limit);
  }

  /** The pending approvals' ids and task ids only (a reconcile step; cheaper than {@link list}). @defaultValue limit 10_000 */
  async pendingTasks(limit = 10_000): Promise<{ id: string; taskId: string }[]> {
    const ids = await this.redis.zrange(this.pendingKey, 0, String(limit - 1));
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    ids.forEach((id) => pipeline.hget(this.recordKey(id), "taskId"));
    const replies = (await pipeline.exec()) ?? [];
    return ids.flatMap((id, i) => {
      const taskId = replies[i]?.[1];
      return typeof taskId === "string" ? [{ id, taskId }] : [];
    });
  }

  private async getMany(ids: string[]): Promise<ApprovalRecord[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    ids.forEach((id) => pipeline.hgetall(this.recordKey(id)));
    const replies = (await pipeline.exec()) ?? [];
    return replies.flatMap(([err, hash]) => {
      const h = hash as Record<string, string>;
      return !err && h.id ? [parseRecord(h)] : [];
    });
  }

  /**
   * Records a signed decision in one Lua script and reports what happened without throwing
   * for refusals. When the store holds approver keys, an approver without a key is
   * `not-approver` and a signature that does not verify is `bad-signature`, before Redis is touched.
   */
  async tryDecide(decision: SignedDecision): Promise<DecideResult> {
    const result = await this.decideOnce(decision);
    const stored = result.type === "decided" || result.type === "recorded";
    const shortfall = stored ? await this.replicationShortfall(decision) : undefined;
    if (this.audit) await this.auditDecision(decision, result);
    if (shortfall) throw shortfall;
    return result;
  }

  /**
   * With `waitReplicas`: the error to throw when the replicas do not hold the decision just
   * recorded, or undefined when they do.
   */
  private async replicationShortfall(decision: SignedDecision): Promise<AgentryError | undefined> {
    const wait = this.waitReplicas;
    if (!wait) return undefined;
    const id = decision.approvalId;
    const timeoutMs = wait.timeoutMs ?? 1_000;
    // The deciding script wrote on this connection, so WAIT on it covers that write.
    const { held, acked } = await awaitReplicas(this.redis, {
      key: this.recordKey(id),
      replicas: wait.replicas,
      timeoutMs,
    });
    if (held && acked >= wait.replicas) return undefined;
    const why = held
      ? `${acked} of ${wait.replicas} Redis replica(s) acknowledged it within ${timeoutMs} ms`
      : "its Redis master no longer has the approval (lost in a failover?)";
    return new AgentryError(
      "REDIS_UNAVAILABLE",
      `The ${decision.outcome} of ${decision.approver} on ${id} is recorded, but ${why}: a failover now could lose it; if \`agentry approvals show ${id}\` still lists it pending without this decision, decide again`,
      {
        retryable: true,
        details: {
          approvalId: id,
          approver: decision.approver,
          replicas: { wanted: wait.replicas, acked },
        },
      },
    );
  }

  private async auditDecision(decision: SignedDecision, result: DecideResult): Promise<void> {
    const audit = this.audit;
    if (!audit) return;
    const approvalId = decision.approvalId;
    const who = { actor: `approver:${decision.approver}` };
    if (result.type === "decided" || result.type === "recorded") {
      const r = result.record;
      const ctx = {
        ...who,
        taskId: r.taskId,
        tenant: r.action.tenant,
        userId: r.action.userId,
        sessionId: r.action.sessionId,
      };
      await audit.append({
        ...ctx,
        type: "approval_vote",
        data: {
          approvalId,
          approver: decision.approver,
          outcome: decision.outcome,
          reason: decision.reason ?? "",
          decidedAt: decision.decidedAt,
          approvals: result.approvals,
          quorum: r.quorum,
        },
      });
      // The resolution itself (approval_decided) is audited once, by the task that applies it,
      // after it has verified every signature again (governance hooks).
      return;
    }
    const reasons: Record<Exclude<DecideResult["type"], "decided" | "recorded">, string> = {
      unknown: "no such approval",
      expired: "the approval has expired",
      "not-approver": "not an approver of this approval",
      "bad-signature": "the signature does not verify",
      "already-decided":
        result.type === "already-decided" && result.byApprover
          ? "this approver already decided"
          : "the approval is already resolved",
    };
    await audit.append({
      ...who,
      type: "approval_refused",
      data: { approvalId, approver: decision.approver, reason: reasons[result.type] },
    });
  }

  private async decideOnce(decision: SignedDecision): Promise<DecideResult> {
    if (this.approverKeys && !this.approverKeys.has(decision.approver)) {
      return { type: "not-approver", approver: decision.approver };
    }
    if (this.approverKeys && !verifyDecision(this.approverKeys, decision)) {
      return { type: "bad-signature", approver: decision.approver };
    }
    const stored: ApprovalDecision = {
      approver: decision.approver,
      outcome: decision.outcome,
      reason: decision.reason ?? "",
      decidedAt: decision.decidedAt,
      signature: decision.signature,
    };
    const id = decision.approvalId;
    const reply = await scripts.decideApproval(
      this.redis,
      [this.recordKey(id), this.pendingKey, this.resolvedKey],
      [id, decision.approver, decision.outcome, JSON.stringify(stored), this.clock.now(), this.channel],
    );
    switch (reply[0]) {
      case "unknown":
        return { type: "unknown" };
      case "expired":
        return { type: "expired" };
      case "not-approver":
        return { type: "not-approver", approver: decision.approver };
      case "already-decided": {
        const status = reply[1] as ApprovalStatus;
        if (status === "expired") return { type: "expired" };
        return { type: "already-decided", status, byApprover: reply[2] === 1 };
      }
      case "recorded":
        return {
          type: "recorded",
          approvals: Number(reply[1]),
          quorum: Number(reply[2]),
          record: await this.require(id),
        };
      case "decided":
        return {
          type: "decided",
          status: reply[1] as "approved" | "rejected",
          approvals: Number(reply[2]),
          record: await this.require(id),
        };
      default:
        throw new AgentryError("INTERNAL", `unexpected reply from decide script: ${JSON.stringify(reply)}`);
    }
  }

  /**
   * Like {@link tryDecide} but throws on refusal: `NOT_FOUND` (unknown id), `APPROVAL_EXPIRED`,
   * `APPROVAL_INVALID` (not an approver, bad signature, already decided).
   */
  async decide(decision: SignedDecision): Promise<Extract<DecideResult, { type: "decided" | "recorded" }>> {
    const result = await this.tryDecide(decision);
    const id = decision.approvalId;
    const details = { approvalId: id, approver: decision.approver, result: result.type };
    switch (result.type) {
      case "decided":
      case "recorded":
        return result;
      case "unknown":
        throw notFound(id);
      case "expired":
        throw new AgentryError("APPROVAL_EXPIRED", `approval ${id} has expired`, { details });
      case "not-approver":
        throw new AgentryError("APPROVAL_INVALID", `${decision.approver} is not an approver of ${id}`, {
          details,
        });
      case "bad-signature":
        throw new AgentryError(
          "APPROVAL_INVALID",
          `signature of ${decision.approver} on ${id} does not verify`,
          { details },
        );
      case "already-decided":
        throw new AgentryError(
          "APPROVAL_INVALID",
          result.byApprover
            ? `${decision.approver} has already decided ${id}`
            : `approval ${id} is already ${result.status}`,
          { details: { ...details, status: result.status } },
        );
    }
  }

  /** Marks the approval expired if it is pending and past its expiry. */
  async expire(
    id: string,
  ): Promise<
    | { type: "expired" }
    | { type: "not-due"; expiresAt: number }
    | { type: "not-pending"; status: ApprovalStatus }
    | { type: "unknown" }
  > {
    const reply = await scripts.expireApproval(
      this.redis,
      [this.recordKey(id), this.pendingKey, this.resolvedKey],
      [id, this.clock.now(), this.channel],
    );
    switch (reply[0]) {
      case "expired":
        // Audited once, as approval_expired, by the task when it resumes (governance hooks).
        return { type: "expired" };
      case "not-due":
        return { type: "not-due", expiresAt: Number(reply[1]) };
      case "not-pending":
        return { type: "not-pending", status: reply[1] as ApprovalStatus };
      default:
        return { type: "unknown" };
    }
  }

  /** Expires every pending approval past its expiry (a reconcile step). Returns the ids expired. */
  async expireDue(options: { limit?: number } = {}): Promise<string[]> {
    const due = await this.redis.zrangebyscore(
      this.pendingKey,
      "-inf",
      this.clock.now(),
      "LIMIT",
      0,
      options.limit ?? 500,
    );
    const expired: string[] = [];
    for (const id of due) {
      if ((await this.expire(id)).type === "expired") expired.push(id);
    }
    return expired;
  }

  /**
   * Resolved approvals (approved, rejected, expired) whose task has not acknowledged them yet,
   * oldest first. A runtime calls this at start-up and periodically to wake the jobs whose
   * pub/sub event was missed. `resolvedBefore` skips the ones resolved too recently for their
   * event to have been handled. @defaultValue limit 500
   */
  async unacknowledgedResolved(
    options: { limit?: number; resolvedBefore?: number } = {},
  ): Promise<ApprovalRecord[]> {
    const ids = await this.redis.zrangebyscore(
      this.resolvedKey,
      "-inf",
      options.resolvedBefore ?? "+inf",
      "LIMIT",
      0,
      options.limit ?? 500,
    );
    return this.getMany(ids);
  }

  /**
   * Cancels a pending approval whose task was cancelled: later decisions are refused and it is
   * no longer listed as pending. Audited once (`approval_cancelled`), by the call that cancelled
   * it. True when this call cancelled it; false when it was unknown or no longer pending.
   */
  async cancel(id: string, reason: string): Promise<boolean> {
    const cancelled =
      (await scripts.cancelApproval(
        this.redis,
        [this.recordKey(id), this.pendingKey, this.allKey],
        [id, this.clock.now(), this.retentionMs, reason],
      )) === 1;
    if (cancelled && this.audit) {
      const record = await this.get(id);
      await this.audit.append({
        type: "approval_cancelled",
        ...(record
          ? {
              taskId: record.taskId,
              tenant: record.action.tenant,
              userId: record.action.userId,
              sessionId: record.action.sessionId,
            }
          : {}),
        data: { approvalId: id, reason },
      });
    }
    return cancelled;
  }

  /** Cancels every pending approval of a task (its task was cancelled). Returns the ids cancelled. */
  async cancelForTask(taskId: string, reason = "the task was cancelled"): Promise<string[]> {
    const pending = (await this.pendingTasks()).filter((r) => r.taskId === taskId);
    const cancelled: string[] = [];
    for (const record of pending) if (await this.cancel(record.id, reason)) cancelled.push(record.id);
    return cancelled;
  }

  /** Marks a resolution consumed by its resumed task. True when this call acknowledged it. */
  async acknowledge(id: string): Promise<boolean> {
    return (
      (await scripts.acknowledgeApproval(
        this.redis,
        [this.recordKey(id), this.resolvedKey, this.allKey],
        [id, this.clock.now(), this.retentionMs],
      )) === 1
    );
  }

  /**
   * Listens for resolutions on a dedicated connection. Resolves once subscribed; the returned
   * function unsubscribes and closes the connection. Malformed messages are ignored.
   */
  async subscribe(onEvent: (event: ApprovalResolvedEvent) => void): Promise<() => Promise<void>> {
    const sub = this.makeSubscriber();
    const channel = this.channel;
    sub.on("message", (ch: string, message: string) => {
      if (ch !== channel) return;
      let event: ApprovalResolvedEvent;
      try {
        event = JSON.parse(message) as ApprovalResolvedEvent;
      } catch {
        return;
      }
      if (typeof event.approvalId === "string") onEvent(event);
    });
    await sub.subscribe(channel);
    return async () => {
      try {
        await sub.unsubscribe(channel);
        await sub.quit();
      } catch {
        sub.disconnect();
      }
    };
  }
}

function notFound(id: string): AgentryError {
  return new AgentryError("NOT_FOUND", `no approval ${id}`, { details: { approvalId: id } });
}

function parseRecord(h: Record<string, string>): ApprovalRecord {
  const decisions = JSON.parse(h.decisions ?? "[]") as ApprovalDecision[] | Record<string, never>;
  return {
    id: h.id as string,
    taskId: h.taskId ?? "",
    ...(h.jobId ? { jobId: h.jobId } : {}),
    toolUseId: h.toolUseId ?? "",
    action: JSON.parse(h.action ?? "{}") as Action,
    approvers: JSON.parse(h.approvers ?? "[]") as string[],
    quorum: Number(h.quorum),
    expiresAt: Number(h.expiresAt),
    status: h.status as ApprovalStatus,
    decisions: Array.isArray(decisions) ? decisions : [],
    createdAt: Number(h.createdAt),
    reason: h.reason ?? "",
    ...(h.resolvedAt ? { resolvedAt: Number(h.resolvedAt) } : {}),
    ...(h.acknowledgedAt ? { acknowledgedAt: Number(h.acknowledgedAt) } : {}),
  };
}
