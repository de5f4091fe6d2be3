import {
  AgentryError,
  defineScripts,
  keySpace,
  tenantOwnedId,
  tenantScope,
  type Verdict,
} from "@agentry/core";
import { canonicalName } from "./normalise.js";
import type { Action, Policy, PolicyContext } from "./types.js";

const scripts = defineScripts<{
  countCappedRun: (
    keys: [counter: string],
    args: [max: number, windowMs: number],
  ) => [allowed: number, count: number];
}>(import.meta.url, { countCappedRun: "./count-capped-run-1.lua" });

/** Options for {@link rateCap}. */
export interface RateCapOptions {
  /** @defaultValue `rate-cap:<tool>:<per>` */
  name?: string;
  /** The tool being capped, matched in canonical form (see `canonicalName`). */
  tool: string;
  /** Most runs allowed in one window. */
  max: number;
  /** Count per task or per tenant. */
  per: "task" | "tenant";
  /** Window length (fixed windows aligned on multiples of it). */
  windowMs: number;
}

/**
 * Caps how often a tool may run per task or per tenant in a fixed time window, counted
 * atomically in Redis (`{prefix}:ratecap:{name}:{scope}:{window}`, scope `tenant:<t>` or
 * `tenant:<t>:task:<id>`: one tenant never uses up another's units), so the cap holds across
 * every worker. A call that is allowed consumes one unit even if another policy then denies
 * the action (counting stays one atomic step). Without `ctx.redis` the policy throws, so the
 * validator denies (fail closed).
 */
export function rateCap(options: RateCapOptions): Policy {
  if (!Number.isInteger(options.max) || options.max < 0)
    throw new AgentryError("INVALID_CONFIG", "rateCap: max must be an integer >= 0");
  if (!(options.windowMs > 0)) throw new AgentryError("INVALID_CONFIG", "rateCap: windowMs must be > 0");
  const tool = canonicalName(options.tool);
  const name = options.name ?? `rate-cap:${options.tool}:${options.per}`;
  return {
    name,
    async evaluate(action: Action, ctx: PolicyContext): Promise<Verdict> {
      if (canonicalName(action.tool) !== tool) return { type: "allow" };
      // Counted when the action was first judged; a recheck must not use up another unit.
      if (ctx.recheck) return { type: "allow" };
      if (!ctx.redis) throw new AgentryError("INVALID_CONFIG", "no Redis connection to count with");
      const scope =
        options.per === "task"
          ? tenantOwnedId(action.tenant, "task", action.taskId)
          : tenantScope(action.tenant);
      const window = Math.floor(ctx.now / options.windowMs);
      const key = keySpace(ctx.prefix).key("ratecap", name, scope, window);
      const reply = await scripts.countCappedRun(ctx.redis, [key], [options.max, options.windowMs]);
      if (reply[0] === 1) return { type: "allow" };
      return {
        type: "deny",
        reason: `tool ${options.tool} may run at most ${options.max} times per ${options.per} in ${options.windowMs} ms`,
      };
    },
  };
}
