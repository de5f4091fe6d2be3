import { systemClock, type Clock } from "@agentry/core";
import type { Message } from "@agentry/llm";
import { requireId } from "../internal/validate.js";
import { compileSessionStoreOptions, encodeMessages, trimHistory } from "./history.js";
import type {
  AppendOptions,
  CompiledSessionStoreOptions,
  SessionStore,
  SessionStoreOptions,
} from "./session-store.js";

/** Options for {@link InMemorySessionStore}. */
export interface InMemorySessionStoreOptions extends SessionStoreOptions {
  /** Internal. For test use only. May change without notice. */
  _internal?: { now?: Clock["now"] };
}

/** The reference {@link SessionStore}: one process, no persistence. Same bounds and TTL rules as Redis. */
export class InMemorySessionStore implements SessionStore {
  private readonly options: CompiledSessionStoreOptions;
  private readonly now: () => number;
  private readonly sessions = new Map<string, { messages: string[]; expiresAt: number }>();
  private readonly used = new Set<string>();

  constructor(options: InMemorySessionStoreOptions = {}) {
    this.options = compileSessionStoreOptions(options);
    this.now = options._internal?.now ?? systemClock.now;
  }

  private live(sessionId: string) {
    const session = this.sessions.get(sessionId);
    if (session && session.expiresAt <= this.now()) {
      this.sessions.delete(sessionId);
      return undefined;
    }
    return session;
  }

  async append(sessionId: string, messages: Message[], options: AppendOptions = {}): Promise<boolean> {
    const encoded = encodeMessages(sessionId, messages, this.options.maxMessageBytes);
    const onceKey = options.once === undefined ? undefined : JSON.stringify([sessionId, options.once]);
    if (onceKey !== undefined && this.used.has(onceKey)) return false;
    if (onceKey !== undefined) this.used.add(onceKey);
    const existing = this.live(sessionId);
    // Like Redis: appending nothing refreshes a session but never creates one.
    if (!existing && encoded.length === 0) return true;
    const session = existing ?? { messages: [], expiresAt: 0 };
    session.messages.push(...encoded);
    if (session.messages.length > this.options.maxMessages) {
      session.messages.splice(0, session.messages.length - this.options.maxMessages);
    }
    session.expiresAt = this.now() + this.options.ttlMs;
    this.sessions.set(sessionId, session);
    return true;
  }

  async load(sessionId: string): Promise<Message[]> {
    const session = this.live(requireId(sessionId, "sessionId"));
    if (!session) return [];
    session.expiresAt = this.now() + this.options.ttlMs;
    const messages = session.messages.map((json) => JSON.parse(json) as Message);
    return trimHistory(messages, this.options);
  }

  async exists(sessionId: string): Promise<boolean> {
    return this.live(requireId(sessionId, "sessionId")) !== undefined;
  }

  async clear(sessionId: string): Promise<void> {
    this.sessions.delete(requireId(sessionId, "sessionId"));
  }
}
