import {
  actionFacts,
  decodedInput,
  isDestructive,
  isEnvKey,
  targetsEnvironment,
  type ActionFacts,
} from "./action-meaning.js";
import { EnvironmentAliases } from "./environments.js";
import { getFields } from "./field-path.js";
import { canonicalName, canonicalText } from "./normalise.js";
import type { Verdict } from "@agentry/core";
import type { Action, Policy } from "./types.js";

/** A test on one field of the tool input (dotted path). */
export type FieldCondition =
  { path: string; equals: unknown } | { path: string; in: unknown[] } | { path: string; matches: RegExp };

/** Which tools a rule applies to: a name, a list of names, or a pattern. Absent: every tool. */
export type ToolSelector = string | string[] | RegExp;

/** The verdict a matching rule gives. */
export type RuleOutcome = Exclude<Verdict, { type: "allow" }>;

/** Options for {@link matchPolicy}. */
export interface MatchPolicyOptions {
  name: string;
  /** Compared in canonical form (`DropTable`, `drop-table` and `drop_table` are one name). @defaultValue every tool */
  tool?: ToolSelector;
  /** All must hold. @defaultValue none (the tool selector alone decides) */
  conditions?: FieldCondition[];
  /**
   * The action targets one of these environments, wherever it says so (see `actionFacts`):
   * `env`, `environment`, `stage` at any depth, `action.env`, env-like attributes, any alias.
   * @defaultValue any environment, or none
   */
  environment?: string | string[];
  /**
   * `true`: only destructive actions (declared, by name, or by intent field); `false`: only
   * the others. @defaultValue either
   */
  destructive?: boolean;
  /** How environment values resolve. @defaultValue the built-in aliases */
  environments?: EnvironmentAliases;
  /** Given when the action matches; otherwise the policy allows. */
  then: RuleOutcome;
}

/** `{ path, equals }`: equality on JSON values, strings in canonical form. */
export const fieldEquals = (path: string, equals: unknown): FieldCondition => ({ path, equals });
/** `{ path, in }`: the field equals one of the values. */
export const fieldIn = (path: string, values: unknown[]): FieldCondition => ({ path, in: values });
/** `{ path, matches }`: the field is a string matching the pattern (raw or in canonical form). */
export const fieldMatches = (path: string, pattern: RegExp): FieldCondition => ({ path, matches: pattern });

/**
 * An argument matcher: when the tool matches and every condition holds, gives `then`;
 * otherwise allows. Every comparison is on canonical forms: strings through `canonicalText`,
 * tool names and input keys through `canonicalName`, and a field whose key names an environment
 * (`env`, `environment`, `stage`...) through the environment aliases, so `input: { env: production }`
 * also catches `Prod`, `LIVE` and `" production"`.
 */
export function matchPolicy(options: MatchPolicyOptions): Policy {
  const matches = actionMatcher(options);
  return {
    name: options.name,
    evaluate: (action: Action): Verdict =>
      matches(action) ? structuredClone(options.then) : { type: "allow" },
  };
}

/** What {@link actionMatcher} tests: a rule's `when`, without its verdict. */
export type ActionMatch = Omit<MatchPolicyOptions, "name" | "then">;

/**
 * The test behind {@link matchPolicy}, on its own: true when the tool matches and every
 * condition holds. Policy files use it for `then: allow` rules, which exempt actions from
 * `defaults.verdict: deny`.
 */
export function actionMatcher(options: ActionMatch): (action: Action) => boolean {
  const aliases = options.environments ?? EnvironmentAliases.default;
  const environments = options.environment === undefined ? undefined : [options.environment].flat();
  const tool = compileSelector(options.tool);
  return (action) => {
    if (!tool(action.tool)) return false;
    let facts: ActionFacts | undefined;
    const factsOf = (): ActionFacts => (facts ??= actionFacts(action, aliases));
    if (
      environments !== undefined &&
      !environments.some((env) => targetsEnvironment(factsOf(), env, aliases))
    )
      return false;
    if (options.destructive !== undefined && isDestructive(action, factsOf()) !== options.destructive)
      return false;
    const input = decodedInput(action.input);
    return (options.conditions ?? []).every((c) => {
      const envField = isEnvPath(c.path);
      return getFields(input, c.path).some((value) =>
        conditionHolds(c, value, envField ? aliases : undefined),
      );
    });
  };
}

/** A tool selector as a predicate on the called name, compared in canonical form. */
function compileSelector(selector: ToolSelector | undefined): (tool: string) => boolean {
  if (selector === undefined) return () => true;
  if (selector instanceof RegExp) {
    return (tool) =>
      [tool, canonicalName(tool)].some((name) => {
        selector.lastIndex = 0;
        return selector.test(name);
      });
  }
  const names = new Set([selector].flat().map(canonicalName));
  return (tool) => names.has(canonicalName(tool));
}

/** The last segment of the path names an environment (`env`, `target.environment`, `stage`). */
function isEnvPath(path: string): boolean {
  return isEnvKey(path.split(".").pop() ?? "");
}

function conditionHolds(c: FieldCondition, value: unknown, aliases: EnvironmentAliases | undefined): boolean {
  if ("equals" in c) return sameValue(value, c.equals, aliases);
  if ("in" in c) return c.in.some((v) => sameValue(value, v, aliases));
  if (typeof value !== "string") return false;
  return [value, canonicalText(value)].some((text) => {
    c.matches.lastIndex = 0;
    return c.matches.test(text);
  });
}

/**
 * JSON equality with strings compared in canonical form; under an environment field, the
 * value matches when any environment it may name (see `EnvironmentAliases.resolveAll`) is the
 * one expected.
 */
function sameValue(a: unknown, b: unknown, aliases: EnvironmentAliases | undefined): boolean {
  if (typeof a === "string" && typeof b === "string") {
    return aliases ? aliases.resolveAll(a).has(aliases.resolve(b)) : canonicalText(a) === canonicalText(b);
  }
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], aliases),
  );
}
