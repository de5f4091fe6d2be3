import { AgentryError } from "@agentry/core";
import { canonicalText, textWords } from "./normalise.js";

/**
 * Environment names and the spellings that mean them. `live` and `prd` are production as much
 * as `production` is; a rule written against `production` must hold for all of them.
 */
export const DEFAULT_ENVIRONMENT_ALIASES: Readonly<Record<string, readonly string[]>> = {
  production: ["prod", "prd", "live"],
  staging: ["stage", "stg"],
  development: ["dev"],
};

/**
 * Resolves environment values to their canonical name through aliases, after
 * {@link canonicalText} (so `" PROD"`, `ｐｒｏｄ` and `Live` all resolve to `production`).
 * Aliases given to the constructor are added to {@link DEFAULT_ENVIRONMENT_ALIASES}, never
 * replace them: a policy file cannot make `prod` stop meaning production.
 */
export class EnvironmentAliases {
  /** The built-in aliases alone. */
  static readonly default = new EnvironmentAliases();

  readonly #canonical = new Map<string, string>();

  /**
   * Throws `INVALID_CONFIG` when one spelling would name two environments (`live` both
   * production and staging): which one wins would be an accident.
   */
  constructor(extra: Readonly<Record<string, readonly string[]>> = {}) {
    for (const source of [DEFAULT_ENVIRONMENT_ALIASES, extra]) {
      for (const [name, aliases] of Object.entries(source)) {
        const target = canonicalText(name);
        if (target === "") throw new AgentryError("INVALID_CONFIG", "An environment name is empty");
        for (const spelling of [name, ...aliases]) this.#add(canonicalText(spelling), target);
      }
    }
  }

  #add(spelling: string, target: string): void {
    if (spelling === "")
      throw new AgentryError("INVALID_CONFIG", `An alias of environment "${target}" is empty`);
    const existing = this.#canonical.get(spelling);
    if (existing !== undefined && existing !== target) {
      throw new AgentryError(
        "INVALID_CONFIG",
        `Environment alias "${spelling}" would mean both "${existing}" and "${target}"`,
        { details: { alias: spelling, environments: [existing, target] } },
      );
    }
    this.#canonical.set(spelling, target);
  }

  /** The canonical environment a value names: its alias target, else the value in canonical form. */
  resolve(value: string): string {
    const text = canonicalText(value);
    return this.#canonical.get(text) ?? text;
  }

  /**
   * Every environment a value may name: the whole value, and each of its words (`prod-eu`,
   * `eu_live` and `non-prod` all include production). Over-matching only makes a rule about an
   * environment apply more often, the safe direction for a deny or an approval.
   */
  resolveAll(value: string): Set<string> {
    const envs = new Set([this.resolve(value)]);
    for (const word of textWords(value)) envs.add(this.resolve(word));
    return envs;
  }
}
