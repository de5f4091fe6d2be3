import { getField } from "./field-path.js";
import type { Action, Policy, Verdict } from "./types.js";

/** A test on one field of the tool input (dotted path). */
export type FieldCondition =
  | { path: string; equals: unknown }
  | { path: string; in: unknown[] }
  | { path: string; matches: RegExp };

/** Which tools a rule applies to: a name, a list of names, or a pattern. Absent: every tool. */
export type ToolSelector = string | string[] | RegExp;

/** The verdict a matching rule gives. */
export type RuleOutcome = Exclude<Verdict, { type: "allow" }>;

/** Options for {@link matchPolicy}. */
export interface MatchPolicyOptions {
  name: string;
  /** @defaultValue every tool */
  tool?: ToolSelector;
  /** All must hold. @defaultValue none (the tool selector alone decides) */
  conditions?: FieldCondition[];
  /** Given when the action matches; otherwise the policy allows. */
  then: RuleOutcome;
}

/** `{ path, equals }`: deep equality on JSON values. */
export const fieldEquals = (path: string, equals: unknown): FieldCondition => ({ path, equals });
/** `{ path, in }`: the field equals one of the values. */
export const fieldIn = (path: string, values: unknown[]): FieldCondition => ({ path, in: values });
/** `{ path, matches }`: the field is a string matching the pattern. */
export const fieldMatches = (path: string, pattern: RegExp): FieldCondition => ({ path, matches: pattern });

/**
 * An argument matcher: when the tool matches and every field condition holds, gives `then`;
 * otherwise allows.
 */
export function matchPolicy(options: MatchPolicyOptions): Policy {
  return {
    name: options.name,
    evaluate(action: Action): Verdict {
      if (!toolMatches(options.tool, action.tool)) return { type: "allow" };
      const all = (options.conditions ?? []).every((c) => conditionHolds(c, getField(action.input, c.path)));
      return all ? structuredClone(options.then) : { type: "allow" };
    },
  };
}

function toolMatches(selector: ToolSelector | undefined, tool: string): boolean {
  if (selector === undefined) return true;
  if (typeof selector === "string") return selector === tool;
  if (Array.isArray(selector)) return selector.includes(tool);
  selector.lastIndex = 0;
  return selector.test(tool);
}

function conditionHolds(c: FieldCondition, value: unknown): boolean {
  if ("equals" in c) return jsonEqual(value, c.equals);
  if ("in" in c) return c.in.some((v) => jsonEqual(value, v));
  if (typeof value !== "string") return false;
  c.matches.lastIndex = 0;
  return c.matches.test(value);
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
