import type { Action, Policy, Verdict } from "./types.js";

/** Tool names that destroy things: `delete_resource`, `dropTable`, `purge-cache`... */
const DESTRUCTIVE_WORDS = new Set(["delete", "destroy", "drop", "remove", "purge", "truncate", "erase", "wipe", "rm"]);
const PRODUCTION = new Set(["production", "prod"]);

/** Options for {@link noProductionDelete}. */
export interface NoProductionDeleteOptions {
  /** @defaultValue `no-prod-delete` */
  name?: string;
  /** @defaultValue `Production deletes are forbidden` */
  reason?: string;
}

/**
 * The guide's policy: a destructive action aimed at production is denied.
 * Destructive: the tool name reads like delete/destroy/drop/remove/purge/truncate/erase/wipe,
 * or the input (or `attributes.type`) says `type: "delete"`.
 * Production: `input.env`, `action.env` or `attributes.env` is `production` (or `prod`).
 */
export function noProductionDelete(options: NoProductionDeleteOptions = {}): Policy {
  const name = options.name ?? "no-prod-delete";
  const reason = options.reason ?? "Production deletes are forbidden";
  return {
    name,
    evaluate(action: Action): Verdict {
      return isDestructive(action) && targetsProduction(action) ? { type: "deny", reason } : { type: "allow" };
    },
  };
}

function inputField(action: Action, key: string): unknown {
  const input = action.input;
  return input !== null && typeof input === "object" ? (input as Record<string, unknown>)[key] : undefined;
}

/** `deleteResource`, `delete_resource`, `delete-resource` → ["delete", "resource"]. */
function toolWords(tool: string): string[] {
  return tool
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

function isDestructive(action: Action): boolean {
  if (toolWords(action.tool).some((w) => DESTRUCTIVE_WORDS.has(w))) return true;
  return inputField(action, "type") === "delete" || action.attributes?.type === "delete";
}

function targetsProduction(action: Action): boolean {
  const envs = [inputField(action, "env"), action.env, action.attributes?.env];
  return envs.some((e) => typeof e === "string" && PRODUCTION.has(e.toLowerCase()));
}
