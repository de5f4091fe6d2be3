import { isAgentryError } from "@agentry/core";
import type { Message } from "@agentry/llm";
import { describe, expect, it } from "vitest";
import { estimateMessageTokens } from "./history.js";
import type { SessionStore, SessionStoreOptions } from "./session-store.js";

/** Makes a fresh, empty store with the given bounds. */
export type SessionStoreFactory = (options: SessionStoreOptions) => Promise<SessionStore> | SessionStore;

const user = (text: string): Message => ({ role: "user", content: text });
const assistant = (text: string): Message => ({ role: "assistant", content: [{ type: "text", text }] });
const toolUse = (id: string): Message => ({
  role: "assistant",
  content: [
    { type: "text", text: "let me check" },
    { type: "tool_use", id, name: "get_weather", input: { city: "Paris" } },
  ],
});
const toolResult = (id: string): Message => ({
  role: "user",
  content: [{ type: "tool_result", toolUseId: id, content: '{"sky":"clear"}' }],
});

/** A tool conversation: indices 0..7, user text turns at 0 and 4. */
const TOOL_CONVERSATION: Message[] = [
  user("weather in Paris?"),
  toolUse("tu_1"),
  toolResult("tu_1"),
  assistant("clear skies"),
  user("and in Rome?"),
  toolUse("tu_2"),
  toolResult("tu_2"),
  assistant("sunny"),
];

async function expectInvalid(promise: Promise<unknown>): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isAgentryError(err, "INVALID_INPUT"), `expected INVALID_INPUT, got ${String(err)}`).toBe(true);
}

/** Every tool_result has its tool_use earlier in the same history. */
function pairsIntact(history: Message[]): boolean {
  const seen = new Set<string>();
  for (const m of history) {
    if (typeof m.content === "string") continue;
    for (const b of m.content) {
      if (b.type === "tool_use") seen.add(b.id);
      if (b.type === "tool_result" && !seen.has(b.toolUseId)) return false;
    }
  }
  return true;
}

/** The {@link SessionStore} contract. Every backend runs it. */
export function sessionStoreConformance(name: string, factory: SessionStoreFactory): void {
  describe(`SessionStore conformance: ${name}`, () => {
    it("appends at most once per `once` key, and says whether it appended", async () => {
      const store = await factory({});
      expect(await store.append("s1", [user("q"), assistant("a")], { once: "task-1" })).toBe(true);
      expect(await store.append("s1", [user("q"), assistant("a")], { once: "task-1" })).toBe(false);
      expect(await store.append("s2", [user("other session")], { once: "task-1" })).toBe(true);
      expect(await store.load("s1")).toEqual([user("q"), assistant("a")]);
    });

    it("returns [] for an unknown session, which does not exist", async () => {
      const store = await factory({});
      expect(await store.load("nobody")).toEqual([]);
      expect(await store.exists("nobody")).toBe(false);
    });

    it("appends and loads messages oldest first, content blocks included", async () => {
      const store = await factory({});
      await store.append("s1", TOOL_CONVERSATION.slice(0, 4));
      await store.append("s1", TOOL_CONVERSATION.slice(4));
      expect(await store.exists("s1")).toBe(true);
      expect(await store.load("s1")).toEqual(TOOL_CONVERSATION);
    });

    it("keeps sessions apart, including ids with separators and braces", async () => {
      const store = await factory({});
      await store.append("tenant:a:s", [user("a")]);
      await store.append("tenant:a", [user("b")]);
      await store.append("{x}:y", [user("c")]);
      expect(await store.load("tenant:a:s")).toEqual([user("a")]);
      expect(await store.load("tenant:a")).toEqual([user("b")]);
      expect(await store.load("{x}:y")).toEqual([user("c")]);
    });

    it("clear removes the session", async () => {
      const store = await factory({});
      await store.append("s1", [user("hi")]);
      await store.clear("s1");
      expect(await store.exists("s1")).toBe(false);
      expect(await store.load("s1")).toEqual([]);
      await store.clear("s1");
    });

    it("appending nothing does not create a session", async () => {
      const store = await factory({});
      await store.append("s1", []);
      expect(await store.exists("s1")).toBe(false);
    });

    it("bounds history by message count, starting at a user text turn", async () => {
      const store = await factory({ maxMessages: 6 });
      for (let i = 0; i < 10; i++) await store.append("s1", [user(`q${i}`), assistant(`a${i}`)]);
      const history = await store.load("s1");
      expect(history).toEqual([
        user("q7"),
        assistant("a7"),
        user("q8"),
        assistant("a8"),
        user("q9"),
        assistant("a9"),
      ]);
    });

    it("never splits a tool_use from its tool_result", async () => {
      const store = await factory({ maxMessages: 5 });
      await store.append("s1", TOOL_CONVERSATION);
      const history = await store.load("s1");
      // The last 5 messages start at an assistant message; the history starts at the next user text turn.
      expect(history).toEqual(TOOL_CONVERSATION.slice(4));
      expect(pairsIntact(history)).toBe(true);
    });

    it("returns [] rather than a history that would start inside a tool exchange", async () => {
      const store = await factory({ maxMessages: 3 });
      await store.append("s1", TOOL_CONVERSATION);
      expect(await store.load("s1")).toEqual([]);
    });

    it("bounds history by approximate tokens", async () => {
      const store = await factory({ maxTokens: 200 });
      const long = "word ".repeat(60); // ~75 tokens a message
      for (let i = 0; i < 6; i++) await store.append("s1", [user(`${i} ${long}`), assistant(long)]);
      const history = await store.load("s1");
      const tokens = history.reduce((sum, m) => sum + estimateMessageTokens(m), 0);
      expect(history.length).toBeGreaterThan(0);
      expect(tokens).toBeLessThanOrEqual(200);
      expect(history[0]).toEqual(user(`5 ${long}`));
      expect(history).toHaveLength(2);
    });

    it("rejects a message larger than maxMessageBytes with INVALID_INPUT and stores nothing", async () => {
      const store = await factory({ maxMessageBytes: 1024 });
      await expectInvalid(store.append("s1", [user("ok"), user("x".repeat(2000))]));
      expect(await store.exists("s1")).toBe(false);
    });

    it("stores a content block type it does not know, unchanged", async () => {
      const store = await factory({});
      const message = {
        role: "assistant",
        content: [{ type: "thinking", thinking: "hmm", signature: "x" }],
      } as unknown as Message;
      await store.append("s1", [user("hi"), message]);
      expect(await store.load("s1")).toEqual([user("hi"), message]);
    });

    it("rejects malformed messages with INVALID_INPUT", async () => {
      const store = await factory({});
      await expectInvalid(store.append("s1", [{ role: "system", content: "x" } as unknown as Message]));
      await expectInvalid(
        store.append("s1", [{ role: "user", content: [{ type: "tool_use", id: 1 }] } as unknown as Message]),
      );
      await expectInvalid(
        store.append("s1", [{ role: "user", content: [{ text: "no type" }] } as unknown as Message]),
      );
      await expectInvalid(store.append("s1", "hello" as unknown as Message[]));
    });

    it("rejects an empty or non-string session id with INVALID_INPUT", async () => {
      const store = await factory({});
      for (const bad of ["", 42, null, undefined] as unknown as string[]) {
        await expectInvalid(store.append(bad, [user("x")]));
        await expectInvalid(store.load(bad));
        await expectInvalid(store.exists(bad));
        await expectInvalid(store.clear(bad));
      }
    });
  });
}
