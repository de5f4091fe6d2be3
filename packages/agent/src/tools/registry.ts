import { AgentryError } from "@agentry/core";
import type { ToolDefinition, ToolResultBlock, ToolUseBlock } from "@agentry/llm";
import { z } from "zod";
import type { Tool, ToolContext } from "./tool.js";

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Options for {@link ToolRegistry}. */
export interface ToolRegistryOptions {
  /** Timeout for tools that set none. @defaultValue 30 000 ms */
  defaultTimeoutMs?: number;
  /**
   * Longest result text sent to the model, in characters; longer results are cut, with a note
   * saying how much was left out, so one huge tool output cannot overflow the context window.
   * @defaultValue 100 000
   */
  maxResultChars?: number;
}

interface Entry {
  tool: Tool;
  definition: ToolDefinition;
}

/**
 * What {@link ToolRegistry.check} found: a call the tool can run (its parsed input), or the
 * error result the model gets instead.
 */
export type ToolCallCheck = { ok: true; tool: Tool; input: unknown } | { ok: false; result: ToolResultBlock };

/**
 * The tools a run may call. {@link ToolRegistry.execute} never throws: an unknown tool, input
 * that fails the schema, a handler that throws or times out all become an `isError`
 * tool_result whose text tells the model what went wrong.
 */
export class ToolRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #defaultTimeoutMs: number;
  readonly #maxResultChars: number;

  constructor(options: ToolRegistryOptions = {}) {
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 30_000;
    this.#maxResultChars = options.maxResultChars ?? 100_000;
  }

  /**
   * Adds tools. Throws `INVALID_CONFIG` for a bad or duplicate name, or an input schema that
   * is not a JSON object schema.
   */
  register(...tools: Tool[]): this {
    for (const tool of tools) {
      if (!TOOL_NAME.test(tool.name)) {
        throw new AgentryError("INVALID_CONFIG", `Tool name "${tool.name}" must match ${TOOL_NAME.source}`);
      }
      if (this.#entries.has(tool.name)) {
        throw new AgentryError("INVALID_CONFIG", `Tool "${tool.name}" is already registered`);
      }
      if (tool.timeoutMs !== undefined && !(tool.timeoutMs > 0)) {
        throw new AgentryError("INVALID_CONFIG", `Tool "${tool.name}" timeoutMs must be positive`);
      }
      this.#entries.set(tool.name, { tool, definition: toDefinition(tool) });
    }
    return this;
  }

  get(name: string): Tool | undefined {
    return this.#entries.get(name)?.tool;
  }

  /** Registered tool names, in registration order. */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** Tool definitions for the model, input schemas as JSON Schema. */
  definitions(): ToolDefinition[] {
    return [...this.#entries.values()].map((e) => e.definition);
  }

  /**
   * Checks a call without running it: the tool exists and the input passes its schema. The
   * agent loop checks before governance hooks judge the call, so a call the tool would refuse
   * (an `env` outside its enum, a missing field) is an error the model sees and corrects, never
   * an action a policy judges or an approver is asked about. Never throws.
   */
  async check(call: ToolUseBlock): Promise<ToolCallCheck> {
    const entry = this.#entries.get(call.name);
    if (entry === undefined) {
      const known = this.names();
      return {
        ok: false,
        result: errorResult(
          call,
          `Unknown tool "${call.name}". Available tools: ${known.length > 0 ? known.join(", ") : "(none)"}.`,
        ),
      };
    }
    const { tool } = entry;
    const raw = normaliseInput(call.input);
    if (!raw.ok)
      return {
        ok: false,
        result: errorResult(call, `Invalid input for tool "${tool.name}": ${raw.message}`),
      };
    const parsed = await tool.input.safeParseAsync(raw.value).catch((error: unknown) => ({
      success: false as const,
      message: messageOf(error),
    }));
    if (!parsed.success) {
      const why = "error" in parsed ? `\n${describeIssues(parsed.error)}` : ` ${parsed.message}`;
      return { ok: false, result: errorResult(call, `Invalid input for tool "${tool.name}":${why}`) };
    }
    return { ok: true, tool, input: parsed.data };
  }

  /** Runs one tool call. Never throws; every failure is an `isError` result. */
  async execute(call: ToolUseBlock, ctx: ToolContext): Promise<ToolResultBlock> {
    const checked = await this.check(call);
    if (!checked.ok) return checked.result;
    const { tool } = checked;

    const timeoutMs = tool.timeoutMs ?? this.#defaultTimeoutMs;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(ctx.signal.reason);
    if (ctx.signal.aborted) return errorResult(call, `Tool "${tool.name}" was cancelled before it ran.`);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const cancelled = new Promise<"cancelled">((resolve) => {
      controller.signal.addEventListener("abort", () => resolve("cancelled"), { once: true });
    });
    try {
      const run = Promise.resolve().then(() =>
        tool.handler(checked.input, { ...ctx, signal: controller.signal }),
      );
      const outcome = await Promise.race([
        run.then((value) => ({ kind: "value" as const, value })),
        timedOut,
        cancelled,
      ]);
      if (outcome === "timeout") {
        controller.abort(
          new AgentryError("TOOL_TIMEOUT", `Tool "${tool.name}" timed out after ${timeoutMs} ms`),
        );
        run.catch(() => undefined); // the abandoned handler may still reject later
        return errorResult(
          call,
          `Tool "${tool.name}" timed out after ${timeoutMs} ms; its outcome is unknown.`,
        );
      }
      if (outcome === "cancelled") {
        run.catch(() => undefined);
        return errorResult(call, `Tool "${tool.name}" was cancelled.`);
      }
      const content = encodeOutput(outcome.value);
      if (content === undefined) {
        return errorResult(call, `Tool "${tool.name}" returned a value that cannot be encoded as JSON.`);
      }
      return { type: "tool_result", toolUseId: call.id, content: this.#truncate(content) };
    } catch (error) {
      return errorResult(call, `Tool "${tool.name}" failed: ${messageOf(error)}`);
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  #truncate(content: string): string {
    if (content.length <= this.#maxResultChars) return content;
    const omitted = content.length - this.#maxResultChars;
    return `${content.slice(0, this.#maxResultChars)}\n[truncated: ${omitted} more characters not shown]`;
  }
}

function toDefinition(tool: Tool): ToolDefinition {
  let schema: Record<string, unknown>;
  try {
    schema = z.toJSONSchema(tool.input, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  } catch (error) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `Tool "${tool.name}" input schema has no JSON Schema form: ${messageOf(error)}`,
      {
        cause: error,
      },
    );
  }
  if (schema.type !== "object") {
    throw new AgentryError("INVALID_CONFIG", `Tool "${tool.name}" input schema must describe an object`);
  }
  const { $schema: _ignored, ...inputSchema } = schema;
  return { name: tool.name, description: tool.description, inputSchema };
}

/** Models sometimes send the input as a JSON string; accept that, refuse anything else that is not an object. */
function normaliseInput(input: unknown): { ok: true; value: unknown } | { ok: false; message: string } {
  if (typeof input !== "string") return { ok: true, value: input };
  try {
    return { ok: true, value: JSON.parse(input) as unknown };
  } catch {
    return { ok: false, message: "expected a JSON object, got a string that is not valid JSON." };
  }
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map(
      (issue) =>
        `- ${issue.path.length > 0 ? issue.path.map(String).join(".") : "(input)"}: ${issue.message}`,
    )
    .join("\n");
}

function encodeOutput(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value ?? null);
  } catch {
    return undefined;
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === "string" ? error : (JSON.stringify(error) ?? String(error));
}

function errorResult(call: ToolUseBlock, content: string): ToolResultBlock {
  return { type: "tool_result", toolUseId: call.id, content, isError: true };
}
