import type { Redis } from "ioredis";
import { z } from "zod";
import { keySpace } from "@agentry/core";
import { ToolRegistry, defineTool, recallTool, rememberTool } from "@agentry/agent";
import type { VectorMemory } from "@agentry/memory";

/** Where the simulated `delete_resource` records what it "deleted" (a Redis list). */
export function deletionsKey(prefix: string): string {
  return keySpace(prefix).key("reference", "deletions");
}

/** The environments the reference tools accept, spelled exactly so. */
export const REFERENCE_ENVIRONMENTS = ["development", "staging", "production"] as const;

const CONDITIONS = ["clear", "partly cloudy", "overcast", "light rain", "windy", "foggy"] as const;

/**
 * The reference worker's tools, the reference scenario's: `get_weather`, `delete_resource`
 * (simulated: it records the deletion in Redis and deletes nothing real; declared destructive,
 * `env` an enum), `remember`, `recall`.
 */
export function referenceTools(options: {
  redis: Redis;
  prefix: string;
  memory: VectorMemory;
  /** Timeout of each tool call. @defaultValue 30_000 */
  timeoutMs?: number;
  /** Fault injection: `delete_resource` hangs this long after recording (see AGENTRY_TOOL_DELAY_MS). @defaultValue 0 (off) */
  deleteDelayMs?: number;
}): ToolRegistry {
  const delayMs = options.deleteDelayMs ?? 0;
  return new ToolRegistry({ defaultTimeoutMs: options.timeoutMs ?? 30_000 }).register(
    defineTool({
      name: "get_weather",
      description: "Get the current weather for a city. Returns temperature in Celsius and conditions.",
      input: z.object({ city: z.string().min(1).describe("City name, e.g. Paris") }),
      idempotent: true,
      handler: ({ city }) => {
        // Deterministic stand-in for a weather service: same city, same answer.
        let h = 0;
        for (const c of city.toLowerCase()) h = (h * 31 + c.charCodeAt(0)) >>> 0;
        return { city, temperatureC: (h % 30) - 2, conditions: CONDITIONS[h % CONDITIONS.length] };
      },
    }),
    defineTool({
      name: "delete_resource",
      description:
        "Delete a named resource in an environment (development, staging or production). Irreversible.",
      input: z.object({
        resource: z.string().min(1).describe("Resource name, e.g. db-7"),
        // An enum, not a free string: `Production`, `prod` or `" production"` is a schema error
        // the model sees and corrects, never an action that policies must guess the meaning of.
        env: z
          .enum(REFERENCE_ENVIRONMENTS)
          .describe("Environment, exactly one of: development, staging, production"),
      }),
      destructive: true,
      handler: async ({ resource, env }, ctx) => {
        const record = {
          resource,
          env,
          taskId: ctx.taskId,
          toolUseId: ctx.toolUseId,
          at: new Date().toISOString(),
        };
        await options.redis.rpush(deletionsKey(options.prefix), JSON.stringify(record));
        // Deliberately deaf to ctx.signal: it stands for a side effect that never answers.
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
        return { deleted: resource, env, simulated: true };
      },
    }),
    rememberTool(options.memory),
    recallTool(options.memory),
  );
}
