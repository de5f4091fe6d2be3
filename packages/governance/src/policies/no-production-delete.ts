import { actionFacts, isDestructive, targetsEnvironment } from "./action-meaning.js";
import { EnvironmentAliases } from "./environments.js";
import type { Verdict } from "@agentry/core";
import type { Action, Policy } from "./types.js";

/** Options for {@link noProductionDelete}. */
export interface NoProductionDeleteOptions {
  /** @defaultValue `no-prod-delete` */
  name?: string;
  /** @defaultValue `Production deletes are forbidden` */
  reason?: string;
  /** How environment values resolve (`prod`, `live` → production). @defaultValue the built-in aliases */
  environments?: EnvironmentAliases;
}

/**
 * Denies any destructive action aimed at production, whatever the tool.
 * Destructive: the registry declares the tool so (`action.destructive`), or its name reads like
 * delete/drop/destroy/truncate/purge/wipe/terminate/remove... in any case or separator, or an
 * intent field (`type`, `operation`, `method`...) says so.
 * Production: any env-like field of the input at any depth (`env`, `environment`, `stage`,
 * `target.env`...), `action.env` or an env-like attribute resolves to `production` through the
 * aliases (`prod`, `prd`, `live`, `" Production"`...). An input too deep or too large to read
 * through counts as production (fail closed). An action that names no environment at all is not
 * production: a tool that always acts on production should say so with `run.attributes.env`.
 */
export function noProductionDelete(options: NoProductionDeleteOptions = {}): Policy {
  const name = options.name ?? "no-prod-delete";
  const reason = options.reason ?? "Production deletes are forbidden";
  const environments = options.environments ?? EnvironmentAliases.default;
  return {
    name,
    evaluate(action: Action): Verdict {
      const facts = actionFacts(action, environments);
      return isDestructive(action, facts) && targetsEnvironment(facts, "production", environments)
        ? { type: "deny", reason }
        : { type: "allow" };
    },
  };
}
