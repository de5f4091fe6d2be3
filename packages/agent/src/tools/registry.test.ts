import { isAgentryError } from "@agentry/core";
import type { ToolUseBlock } from "@agentry/llm";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ToolRegistry } from "./registry.js";
import { defineTool, type ToolContext } from "./tool.js";

const ctx = (signal: AbortSignal = new AbortController().signal): ToolContext => ({
  taskId: "t1",
  tenant: "acme",
  userId: "u1",
  sessionId: "s1",
  toolUseId: "call_1",
  signal,
  attributes: {},
});
const call = (name: string, input: unknown): ToolUseBlock => ({
  type: "tool_use",
  id: "call_1",
  name,
  input,
});

const weather = defineTool({
  name: "get_weather",
  description: "Current weather for a city",
  input: z.object({ city: z.string().min(1), unit: z.enum(["c", "f"]).default("c") }),
  handler: ({ city, unit }) => ({ city, unit, tempC: 21 }),
});

describe("ToolRegistry", () => {
  it("exports Anthropic tool definitions with JSON Schema inputs", () => {
    const registry = new ToolRegistry().register(weather);
    expect(registry.names()).toEqual(["get_weather"]);
    const [def] = registry.definitions();
    expect(def?.name).toBe("get_weather");
    expect(def?.description).toBe("Current weather for a city");
    expect(def?.inputSchema).toMatchObject({
      type: "object",
      properties: { city: { type: "string", minLength: 1 }, unit: { type: "string", enum: ["c", "f"] } },
      required: ["city"],
    });
    expect(def?.inputSchema).not.toHaveProperty("$schema");
  });

  it("refuses duplicate names, bad names and non-object schemas", () => {
    const registry = new ToolRegistry().register(weather);
    expect(() => registry.register(weather)).toThrow(/already registered/);
    const bad = { ...weather, name: "get weather!" };
    expect(() => new ToolRegistry().register(bad)).toThrow(
      expect.objectContaining({ code: "INVALID_CONFIG" }),
    );
    const scalar = defineTool({ name: "scalar", description: "x", input: z.string(), handler: (s) => s });
    expect(() => new ToolRegistry().register(scalar)).toThrow(/must describe an object/);
  });

  it("runs a valid call and returns the handler's value as JSON, applying schema defaults", async () => {
    const result = await new ToolRegistry()
      .register(weather)
      .execute(call("get_weather", { city: "Paris" }), ctx());
    expect(result).toEqual({
      type: "tool_result",
      toolUseId: "call_1",
      content: '{"city":"Paris","unit":"c","tempC":21}',
    });
  });

  it("passes a string result through unchanged", async () => {
    const echo = defineTool({
      name: "echo",
      description: "x",
      input: z.object({ s: z.string() }),
      handler: ({ s }) => s,
    });
    const result = await new ToolRegistry().register(echo).execute(call("echo", { s: "hi" }), ctx());
    expect(result.content).toBe("hi");
    expect(result.isError).toBeUndefined();
  });

  it("turns schema failures into an error result that lists every failing field", async () => {
    const result = await new ToolRegistry()
      .register(weather)
      .execute(call("get_weather", { city: "", unit: "k" }), ctx());
    expect(result.isError).toBe(true);
    expect(result.content).toContain('Invalid input for tool "get_weather"');
    expect(result.content).toMatch(/- city: .*/);
    expect(result.content).toMatch(/- unit: .*/);
  });

  it("accepts input sent as a JSON string and refuses a non-JSON string without throwing", async () => {
    const registry = new ToolRegistry().register(weather);
    const ok = await registry.execute(call("get_weather", '{"city":"Oslo"}'), ctx());
    expect(ok.isError).toBeUndefined();
    expect(JSON.parse(ok.content)).toMatchObject({ city: "Oslo" });
    const bad = await registry.execute(call("get_weather", "Oslo please"), ctx());
    expect(bad.isError).toBe(true);
    expect(bad.content).toContain("not valid JSON");
  });

  it("keeps a tool's destructive declaration, and checks a call without running it", async () => {
    let ran = 0;
    const reset = defineTool({
      name: "reset_cluster",
      description: "Wipes a cluster back to its image",
      input: z.object({ cluster: z.string(), env: z.enum(["staging", "production"]) }),
      destructive: true,
      handler: () => ++ran,
    });
    const registry = new ToolRegistry().register(reset, weather);
    expect(registry.get("reset_cluster")?.destructive).toBe(true);
    expect(registry.get("get_weather")?.destructive).toBeUndefined();
    // The declaration is for policies, not the model: the definition sent to it is unchanged.
    expect(registry.definitions()[0]).not.toHaveProperty("destructive");

    const ok = await registry.check(call("reset_cluster", '{"cluster":"c1","env":"staging"}'));
    expect(ok).toMatchObject({
      ok: true,
      tool: { name: "reset_cluster", destructive: true },
      input: { cluster: "c1", env: "staging" },
    });
    const bad = await registry.check(call("reset_cluster", { cluster: "c1", env: "Production" }));
    expect(bad).toMatchObject({ ok: false, result: { isError: true, toolUseId: "call_1" } });
    expect(!bad.ok && bad.result.content).toMatch(/^Invalid input for tool "reset_cluster":\n- env: /);
    expect(ran).toBe(0);
  });

  it("answers an unknown tool with the list of tools that exist", async () => {
    const result = await new ToolRegistry().register(weather).execute(call("get_wether", {}), ctx());
    expect(result).toMatchObject({ isError: true, toolUseId: "call_1" });
    expect(result.content).toBe('Unknown tool "get_wether". Available tools: get_weather.');
  });

  it("turns a throwing handler (sync or async) into an error result", async () => {
    const boom = defineTool({
      name: "boom",
      description: "x",
      input: z.object({ async: z.boolean() }),
      handler: async ({ async }) => {
        if (!async) throw new Error("disk full");
        await Promise.resolve();
        throw new Error("network down");
      },
    });
    const syncBoom = defineTool({
      name: "sync_boom",
      description: "x",
      input: z.object({}),
      handler: () => {
        throw new Error("bad state");
      },
    });
    const registry = new ToolRegistry().register(boom, syncBoom);
    expect(await registry.execute(call("boom", { async: true }), ctx())).toMatchObject({
      isError: true,
      content: 'Tool "boom" failed: network down',
    });
    expect(await registry.execute(call("sync_boom", {}), ctx())).toMatchObject({
      isError: true,
      content: 'Tool "sync_boom" failed: bad state',
    });
  });

  it("times a slow handler out, aborts its signal and reports it to the model", async () => {
    let sawAbort = false;
    const slow = defineTool({
      name: "slow",
      description: "x",
      input: z.object({}),
      timeoutMs: 20,
      handler: (_input, { signal }) =>
        new Promise<string>((resolve) => {
          signal.addEventListener("abort", () => {
            sawAbort = true;
          });
          setTimeout(() => resolve("late"), 5_000).unref();
        }),
    });
    const result = await new ToolRegistry().register(slow).execute(call("slow", {}), ctx());
    expect(result).toMatchObject({
      isError: true,
      content: 'Tool "slow" timed out after 20 ms; its outcome is unknown.',
    });
    expect(sawAbort).toBe(true);
  });

  it("uses the registry default timeout for tools that set none", async () => {
    const hang = defineTool({
      name: "hang",
      description: "x",
      input: z.object({}),
      handler: () => new Promise<never>(() => undefined),
    });
    const result = await new ToolRegistry({ defaultTimeoutMs: 10 })
      .register(hang)
      .execute(call("hang", {}), ctx());
    expect(result.content).toContain("timed out after 10 ms");
  });

  it("reports a cancelled run as an error result instead of hanging", async () => {
    const controller = new AbortController();
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const hang = defineTool({
      name: "hang",
      description: "x",
      input: z.object({}),
      handler: () => {
        started();
        return new Promise<never>(() => undefined);
      },
    });
    const pending = new ToolRegistry().register(hang).execute(call("hang", {}), ctx(controller.signal));
    await running;
    controller.abort();
    expect(await pending).toMatchObject({ isError: true, content: 'Tool "hang" was cancelled.' });
  });

  it("reports a result that cannot be JSON-encoded", async () => {
    const cyclic = defineTool({
      name: "cyclic",
      description: "x",
      input: z.object({}),
      handler: () => {
        const o: Record<string, unknown> = {};
        o.self = o;
        return o;
      },
    });
    const result = await new ToolRegistry().register(cyclic).execute(call("cyclic", {}), ctx());
    expect(result).toMatchObject({ isError: true });
    expect(result.content).toContain("cannot be encoded as JSON");
  });

  it("keeps INVALID_CONFIG typed", () => {
    try {
      new ToolRegistry().register({ ...weather, timeoutMs: 0 });
      expect.unreachable();
    } catch (error) {
      expect(isAgentryError(error, "INVALID_CONFIG")).toBe(true);
    }
  });

  it("cuts an oversized result and says how much was left out", async () => {
    const big = defineTool({
      name: "big",
      description: "x",
      input: z.object({}),
      handler: () => "a".repeat(150),
    });
    const result = await new ToolRegistry({ maxResultChars: 100 })
      .register(big)
      .execute(call("big", {}), ctx());
    expect(result.content).toBe(`${"a".repeat(100)}\n[truncated: 50 more characters not shown]`);
  });
});
