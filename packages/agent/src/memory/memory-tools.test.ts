import type { LanguageModel, ModelRequest, ModelResponse, ToolUseBlock } from "@agentry/llm";
import { InMemoryVectorMemory } from "@agentry/memory";
import { describe, expect, it } from "vitest";
import { runAgent } from "../loop/run-agent.js";
import type { AgentState } from "../loop/state.js";
import { ToolRegistry } from "../tools/registry.js";
import type { ToolContext } from "../tools/tool.js";
import {
  memoryNamespace,
  recallTool,
  rememberTool,
  RECALL_HEADING,
  systemWithMemories,
  type MemoryLike,
} from "./memory-tools.js";

/** The reference vector memory, with its searches recorded. */
function spiedMemory(): MemoryLike & {
  searches: { namespace: string; query: string; k?: number }[];
  inner: InMemoryVectorMemory;
} {
  const inner = new InMemoryVectorMemory();
  const searches: { namespace: string; query: string; k?: number }[] = [];
  return {
    inner,
    searches,
    add: (input) => inner.add(input),
    search: async (input) => {
      searches.push({
        namespace: input.namespace,
        query: input.query,
        ...(input.k === undefined ? {} : { k: input.k }),
      });
      return inner.search(input);
    },
  };
}

const ctx = (tenant: string, userId: string): ToolContext => ({
  taskId: "t1",
  tenant,
  userId,
  sessionId: "s1",
  toolUseId: "c1",
  signal: new AbortController().signal,
  attributes: {},
});
const call = (name: string, input: unknown): ToolUseBlock => ({ type: "tool_use", id: "c1", name, input });

function scripted(responses: ModelResponse["content"][]): LanguageModel & { requests: ModelRequest[] } {
  const requests: ModelRequest[] = [];
  return {
    provider: "scripted",
    defaultModel: "s",
    requests,
    async generate(request) {
      requests.push(request);
      const content = responses[requests.length - 1] ?? [{ type: "text", text: "(end of script)" }];
      return {
        id: "m",
        model: "s",
        content,
        stopReason: content.some((b) => b.type === "tool_use") ? "tool_use" : "end_turn",
        usage: { input: 1, output: 1, cacheCreationInput: 0, cacheReadInput: 0 },
      };
    },
  };
}

describe("remember / recall tools", () => {
  it("store and find memories in the caller's tenant/user namespace only", async () => {
    const memory = spiedMemory();
    const tools = new ToolRegistry().register(rememberTool(memory), recallTool(memory, undefined, { k: 2 }));
    expect(tools.definitions().map((d) => d.name)).toEqual(["remember", "recall"]);

    const stored = await tools.execute(
      call("remember", { text: "Alice prefers window seats on long flights" }),
      ctx("acme", "alice"),
    );
    expect(JSON.parse(stored.content)).toEqual({ id: expect.any(String), remembered: true });
    await tools.execute(
      call("remember", { text: "Alice's invoices go to the finance team" }),
      ctx("acme", "alice"),
    );
    await tools.execute(call("remember", { text: "Bob prefers aisle seats" }), ctx("acme", "bob"));
    expect(await memory.inner.count(memoryNamespace("acme", "alice"))).toBe(2);
    expect(await memory.inner.count("tenant:acme:user:bob")).toBe(1);

    const found = await tools.execute(
      call("recall", { query: "which seats does she prefer on flights" }),
      ctx("acme", "alice"),
    );
    const { memories } = JSON.parse(found.content) as { memories: { text: string; score: number }[] };
    expect(memories.map((m) => m.text)[0]).toBe("Alice prefers window seats on long flights");
    expect(memories.every((m) => !m.text.startsWith("Bob"))).toBe(true);
    expect(memory.searches[0]).toEqual({
      namespace: "tenant:acme:user:alice",
      query: "which seats does she prefer on flights",
      k: 2,
    });

    const other = await tools.execute(call("recall", { query: "seats" }), ctx("globex", "alice"));
    expect(JSON.parse(other.content)).toEqual({ memories: [] });
  });

  it("refuse empty text with an error result the model can read", async () => {
    const tools = new ToolRegistry().register(rememberTool(spiedMemory()));
    const result = await tools.execute(call("remember", { text: "" }), ctx("acme", "alice"));
    expect(result.isError).toBe(true);
    expect(result.content).toContain("- text:");
  });

  it("accept a custom namespace function", async () => {
    const memory = spiedMemory();
    const tools = new ToolRegistry().register(
      rememberTool(memory, (c) => `team:${c.attributes.team ?? "none"}`),
    );
    await tools.execute(call("remember", { text: "deploys on Fridays are banned" }), {
      ...ctx("acme", "alice"),
      attributes: { team: "ops" },
    });
    expect(await memory.inner.count("team:ops")).toBe(1);
  });
});

describe("automatic recall", () => {
  it("puts the top memories for the new user message into the system prompt under a clear heading", async () => {
    const memory = spiedMemory();
    const alice = memoryNamespace("acme", "alice");
    await memory.add({ namespace: alice, text: "Alice lives in Oslo" });
    await memory.add({ namespace: alice, text: "Alice is allergic to peanuts" });
    await memory.add({ namespace: memoryNamespace("acme", "bob"), text: "Bob lives in Oslo too" });
    const model = scripted([[{ type: "text", text: "Take a coat." }]]);
    const result = await runAgent({
      model,
      tools: new ToolRegistry(),
      system: "You are a travel assistant.",
      run: { taskId: "t", tenant: "acme", userId: "alice", sessionId: "s" },
      messages: [{ role: "user", content: "What should I wear where Alice lives in winter?" }],
      recall: { memory, namespace: alice, k: 1 },
    });
    expect(result.status).toBe("completed");
    expect(memory.searches).toEqual([
      { namespace: alice, query: "What should I wear where Alice lives in winter?", k: 1 },
    ]);
    expect(model.requests[0]?.system).toBe(
      `You are a travel assistant.\n\n${RECALL_HEADING}\n- Alice lives in Oslo`,
    );
    expect(result.state.recalled).toEqual(["Alice lives in Oslo"]);
  });

  it("keeps the recalled memories in the state so a resume sends the same system prompt without searching again", async () => {
    const memory = spiedMemory();
    await memory.add({ namespace: "n", text: "likes tea" });
    const model = scripted([[{ type: "text", text: "ok" }]]);
    const state: AgentState = {
      version: 1,
      messages: [{ role: "user", content: "hello" }],
      step: 0,
      usage: { input: 0, output: 0, cacheCreationInput: 0, cacheReadInput: 0 },
      pending: [],
      recalled: ["likes coffee"],
    };
    await runAgent({
      model,
      tools: new ToolRegistry(),
      run: { taskId: "t", tenant: "a", userId: "u", sessionId: "s" },
      state,
      recall: { memory, namespace: "n" },
    });
    expect(memory.searches).toEqual([]);
    expect(model.requests[0]?.system).toBe(`${RECALL_HEADING}\n- likes coffee`);
  });

  it("leaves the system prompt alone when nothing is recalled", () => {
    expect(systemWithMemories("sys", [])).toBe("sys");
    expect(systemWithMemories(undefined, [])).toBeUndefined();
  });
});
