import type { Policy, Verdict } from "./types.js";

/** Options for {@link toolAllowList} and {@link toolDenyList}. */
export interface ToolListOptions {
  /** Exact tool names. */
  tools: string[];
  /** @defaultValue `tool-allow-list` / `tool-deny-list` */
  name?: string;
}

/** Denies every tool not named in `tools`. */
export function toolAllowList(options: ToolListOptions): Policy {
  const allowed = new Set(options.tools);
  return {
    name: options.name ?? "tool-allow-list",
    evaluate: (action): Verdict =>
      allowed.has(action.tool) ? { type: "allow" } : { type: "deny", reason: `tool ${action.tool} is not on the allow list` },
  };
}

/** Denies every tool named in `tools`. */
export function toolDenyList(options: ToolListOptions): Policy {
  const denied = new Set(options.tools);
  return {
    name: options.name ?? "tool-deny-list",
    evaluate: (action): Verdict =>
      denied.has(action.tool) ? { type: "deny", reason: `tool ${action.tool} is on the deny list` } : { type: "allow" },
  };
}
