import { canonicalName } from "./normalise.js";
import type { Verdict } from "@agentry/core";
import type { Policy } from "./types.js";

/** Options for {@link toolAllowList} and {@link toolDenyList}. */
export interface ToolListOptions {
  /** Tool names, compared in canonical form (`DropTable`, `drop-table`, `drop_table` are one name). */
  tools: string[];
  /** @defaultValue `tool-allow-list` / `tool-deny-list` */
  name?: string;
}

/** Denies every tool not named in `tools`. */
export function toolAllowList(options: ToolListOptions): Policy {
  const allowed = new Set(options.tools.map(canonicalName));
  return {
    name: options.name ?? "tool-allow-list",
    evaluate: (action): Verdict =>
      allowed.has(canonicalName(action.tool))
        ? { type: "allow" }
        : { type: "deny", reason: `tool ${action.tool} is not on the allow list` },
  };
}

/** Denies every tool named in `tools`, in any spelling. */
export function toolDenyList(options: ToolListOptions): Policy {
  const denied = new Set(options.tools.map(canonicalName));
  return {
    name: options.name ?? "tool-deny-list",
    evaluate: (action): Verdict =>
      denied.has(canonicalName(action.tool))
        ? { type: "deny", reason: `tool ${action.tool} is on the deny list` }
        : { type: "allow" },
  };
}
