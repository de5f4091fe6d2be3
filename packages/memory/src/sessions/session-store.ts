import type { Fence } from "@agentry/core";
import type { Message } from "@agentry/llm";

/** Conditions of one append. */
export interface AppendOptions {
  /**
   * Append only while the fence holds (checked inside Redis with the write); otherwise throw
   * `LOCK_LOST` and append nothing. The in-memory store runs in one process and ignores it.
   */
  fence?: Fence;
  /**
   * Append at most once per key (e.g. the task id): a second append with the same key, by any
   * process, changes nothing. The key is remembered for the session's TTL.
   */
  once?: string;
}

/**
 * A session's conversation history: the model's messages, content blocks, tool calls and
 * results included. Every use refreshes the session's TTL.
 */
export interface SessionStore {
  /** Appends messages; creates the session if needed; refreshes TTL. Returns false when `once` had been used already. */
  append(sessionId: string, messages: Message[], options?: AppendOptions): Promise<boolean>;
  /**
   * Loads the most recent history, trimmed to the store's bounds (message count and approx
   * tokens), oldest first; refreshes TTL. Never splits a tool_use from its tool_result
   * (trim at a user text turn boundary). Unknown session → [].
   */
  load(sessionId: string): Promise<Message[]>;
  exists(sessionId: string): Promise<boolean>;
  clear(sessionId: string): Promise<void>;
  /**
   * The Redis key of a `once` marker, for stores that keep one: a completed task's marker is
   * dropped with its step log (no fenced append can come after completion).
   */
  onceKey?(sessionId: string, once: string): string;
}

/** Bounds and limits shared by every {@link SessionStore}. */
export interface SessionStoreOptions {
  /** Most messages `load` returns (and the store keeps). @defaultValue 100 */
  maxMessages?: number;
  /** Most approximate tokens `load` returns (≈ characters / 4). @defaultValue 50_000 */
  maxTokens?: number;
  /** Idle lifetime of a session; each append or load restarts it. @defaultValue 7 days */
  ttlMs?: number;
  /** Largest single message, JSON-encoded, in bytes; larger → INVALID_INPUT. @defaultValue 256 KiB */
  maxMessageBytes?: number;
}

/** {@link SessionStoreOptions} with every default applied. */
export type CompiledSessionStoreOptions = Required<SessionStoreOptions>;

export const DEFAULT_SESSION_OPTIONS: CompiledSessionStoreOptions = Object.freeze({
  maxMessages: 100,
  maxTokens: 50_000,
  ttlMs: 7 * 24 * 60 * 60 * 1000,
  maxMessageBytes: 256 * 1024,
});
