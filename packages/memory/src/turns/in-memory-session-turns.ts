import { newToken, positiveInt, systemClock, type Clock } from "@agentry/core";
import { requireId } from "../internal/validate.js";
import type { SessionLease, SessionTurns } from "./session-turns.js";

/** Options for {@link InMemorySessionTurns}. */
export interface InMemorySessionTurnsOptions {
  /** Internal. For test use only. May change without notice. */
  _internal?: { now?: Clock["now"] };
}

interface SessionState {
  order: string[];
  lease: { taskId: string; token: string; expiresAt: number } | undefined;
}

/** The reference {@link SessionTurns}: same rules as Redis, for one process. */
export class InMemorySessionTurns implements SessionTurns {
  private readonly sessions = new Map<string, SessionState>();
  private readonly now: () => number;

  constructor(options: InMemorySessionTurnsOptions = {}) {
    this.now = options._internal?.now ?? systemClock.now;
  }

  /** The session's state, expired lease dropped; created only when `create` is set. */
  private state(sessionId: string, create = false): SessionState {
    requireId(sessionId, "sessionId");
    let state = this.sessions.get(sessionId);
    if (!state) {
      state = { order: [], lease: undefined };
      if (create) this.sessions.set(sessionId, state);
    }
    if (state.lease && state.lease.expiresAt <= this.now()) state.lease = undefined;
    return state;
  }

  private drop(sessionId: string, state: SessionState, taskId: string): void {
    state.order = state.order.filter((t) => t !== taskId);
    if (state.order.length === 0 && !state.lease) this.sessions.delete(sessionId);
  }

  async enqueue(sessionId: string, taskId: string): Promise<void> {
    requireId(taskId, "taskId");
    const state = this.state(sessionId, true);
    if (!state.order.includes(taskId)) state.order.push(taskId);
  }

  async tryAcquire(sessionId: string, taskId: string, ttlMs: number): Promise<SessionLease | null> {
    const state = this.state(sessionId);
    requireId(taskId, "taskId");
    positiveInt(ttlMs, "ttlMs");
    if (state.order[0] !== taskId || state.lease) return null;
    const lease = { taskId, token: newToken(), expiresAt: this.now() + ttlMs };
    state.lease = lease;
    return { sessionId, ...lease };
  }

  async renew(lease: SessionLease, ttlMs: number): Promise<boolean> {
    positiveInt(ttlMs, "ttlMs");
    const state = this.state(lease.sessionId);
    if (state.lease?.token !== lease.token) return false;
    state.lease.expiresAt = this.now() + ttlMs;
    lease.expiresAt = state.lease.expiresAt;
    return true;
  }

  /** The fence option is for Redis: this store runs in one process and ignores it. */
  async release(lease: SessionLease): Promise<boolean> {
    const state = this.state(lease.sessionId);
    if (state.lease && state.lease.token !== lease.token) return false;
    state.lease = undefined;
    this.drop(lease.sessionId, state, lease.taskId);
    return true;
  }

  async remove(sessionId: string, taskId: string, options: { endTurn?: boolean } = {}): Promise<void> {
    const state = this.state(sessionId);
    if (options.endTurn && state.lease?.taskId === taskId) state.lease = undefined;
    this.drop(sessionId, state, requireId(taskId, "taskId"));
  }

  async head(sessionId: string): Promise<string | null> {
    return this.state(sessionId).order[0] ?? null;
  }
}
