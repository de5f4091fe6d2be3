import type { Fence } from "@agentry/core";

/** A held turn of a session. `expiresAt` is ms since the epoch (server clock for Redis). */
export interface SessionLease {
  sessionId: string;
  taskId: string;
  token: string;
  expiresAt: number;
}

/**
 * Session turns: tasks of one session run one at a time, in submit order, across many
 * workers. A turn is a lease with an owner token and an expiry, so a dead holder frees it.
 */
export interface SessionTurns {
  /** Registers a task in its session's order (called at submit time). Idempotent per taskId. */
  enqueue(sessionId: string, taskId: string): Promise<void>;
  /**
   * Takes the turn if taskId is at the head of the session's order and no live lease is held
   * by another owner. Returns a lease, or null when it is not this task's turn or a live lease
   * is held (`head()` says whose turn it is). Re-acquirable by the same taskId after its
   * previous holder died (lease expired). A task that was never enqueued, or whose turn has
   * ended, is never at the head: the caller gets null every time.
   */
  tryAcquire(sessionId: string, taskId: string, ttlMs: number): Promise<SessionLease | null>;
  /** Extends a held lease; false if lost. */
  renew(lease: SessionLease, ttlMs: number): Promise<boolean>;
  /**
   * Ends the turn: removes taskId from the order and drops the lease (only if the token matches). Idempotent.
   * A holder whose lease ran out and was not re-taken still ends its turn; a lease re-taken by
   * another owner is left alone. With a `fence` (Redis only), nothing changes unless the fence
   * holds, checked in the same script. Returns true when the turn ended (or had already ended),
   * false when another owner holds it or the fence did not hold.
   */
  release(lease: SessionLease, options?: { fence?: Fence }): Promise<boolean>;
  /**
   * Removes a task from the order (cancelled, or dead before it ran). A running holder keeps its
   * lease until it releases it; with `endTurn` (the caller knows the task is not running: it was
   * parked, or is dead) a turn the task holds ends too, so the next task can take it at once.
   */
  remove(sessionId: string, taskId: string, options?: { endTurn?: boolean }): Promise<void>;
  /** The task whose turn it is (head), for diagnostics. */
  head(sessionId: string): Promise<string | null>;
}
