import { EnvironmentAliases } from "./environments.js";
import { canonicalName, textWords } from "./normalise.js";
import type { Action } from "./types.js";

/**
 * Words that make a tool name (or an intent field such as `operation`) destructive by default:
 * `delete_resource`, `dropTable`, `purge-cache`, `terminate_instance`. A tool whose name says
 * none of them declares itself with `destructive: true` in the registry.
 */
export const DESTRUCTIVE_WORDS: ReadonlySet<string> = new Set([
  "delete",
  "drop",
  "destroy",
  "truncate",
  "purge",
  "wipe",
  "terminate",
  "remove",
  "erase",
  "rm",
  "rmdir",
  "unlink",
  "shred",
  "nuke",
  "kill",
  "teardown",
  "deprovision",
  "decommission",
  "uninstall",
]);

/** Input keys whose value says what the call does (`{ operation: "delete" }`, `{ method: "DELETE" }`). */
const INTENT_KEYS = new Set(["type", "action", "operation", "op", "method", "verb", "intent"]);
/** A key naming an environment contains one of these words: `env`, `targetEnv`, `deploy_environment`, `stage`. */
const ENV_KEY_WORDS = new Set(["env", "envs", "environment", "environments", "stage", "tier"]);

/** Deepest nesting and most values inspected in one input; past either the input counts as hiding something. */
const MAX_DEPTH = 16;
const MAX_NODES = 10_000;

/** `deletes`, `deleting`, `deletion`, `dropped`, `removal` → a destructive stem. */
function isDestructiveWord(word: string): boolean {
  if (DESTRUCTIVE_WORDS.has(word)) return true;
  for (const suffix of ["s", "es", "d", "ed", "ing", "ion", "ions", "al", "er"]) {
    if (!word.endsWith(suffix) || word.length <= suffix.length + 1) continue;
    const stem = word.slice(0, -suffix.length);
    const undoubled = /(.)\1$/u.test(stem) ? stem.slice(0, -1) : stem;
    if ([stem, `${stem}e`, undoubled].some((w) => DESTRUCTIVE_WORDS.has(w))) return true;
  }
  return false;
}

/** True when the text (a name or an intent value) contains a destructive word. */
export function soundsDestructive(text: string): boolean {
  return textWords(text).some(isDestructiveWord);
}

/** A key that names an environment, in any spelling (`env`, `ENV`, `targetEnv`, `deploy_environment`, `stage`). */
export function isEnvKey(key: string): boolean {
  return textWords(key).some((w) => ENV_KEY_WORDS.has(w));
}

function isIntentKey(key: string): boolean {
  return INTENT_KEYS.has(canonicalName(key));
}

/** What an action's input and context say, collected in one walk. */
export interface ActionFacts {
  /** Canonical environments named anywhere (input at any depth, `action.env`, env-like attributes). */
  environments: Set<string>;
  /** An intent field (`type`, `operation`, `method`...) at any depth says delete/drop/... */
  destructiveIntent: boolean;
  /** The input was too deep or too large to inspect fully: treat it as naming any environment. */
  truncated: boolean;
}

/**
 * Reads an action's input the way an attacker would hide things in it: environments under any
 * env-like key (`env`, `ENV`, `environment`, `stage`, `target.env`, `targets[2].Env`,
 * `env: ["staging", "prod"]`), plus `action.env` and env-like `attributes`. A string input is
 * decoded as JSON first, as the tool registry does before the tool reads it.
 */
export function actionFacts(
  action: Action,
  aliases: EnvironmentAliases = EnvironmentAliases.default,
): ActionFacts {
  const facts: ActionFacts = { environments: new Set(), destructiveIntent: false, truncated: false };
  let nodes = 0;
  const addEnv = (value: string): void => {
    for (const env of aliases.resolveAll(value)) facts.environments.add(env);
  };
  const walk = (value: unknown, depth: number, underEnv: boolean, underIntent: boolean): void => {
    if (++nodes > MAX_NODES || depth > MAX_DEPTH) {
      facts.truncated = true;
      return;
    }
    if (typeof value === "string") {
      if (underEnv) addEnv(value);
      if (underIntent && soundsDestructive(value)) facts.destructiveIntent = true;
      return;
    }
    if (value === null || typeof value !== "object") return;
    if (Array.isArray(value)) {
      for (const item of value) walk(item, depth + 1, underEnv, underIntent);
      return;
    }
    for (const [key, child] of Object.entries(value)) {
      walk(child, depth + 1, underEnv || isEnvKey(key), underIntent || isIntentKey(key));
    }
  };
  walk(decodedInput(action.input), 0, false, false);
  if (typeof action.env === "string") addEnv(action.env);
  for (const [key, value] of Object.entries(action.attributes ?? {})) {
    if (typeof value !== "string") continue;
    if (isEnvKey(key)) addEnv(value);
    if (isIntentKey(key) && soundsDestructive(value)) facts.destructiveIntent = true;
  }
  return facts;
}

/**
 * The input a tool would read: models sometimes send the input as a JSON string, which the
 * registry decodes before the tool sees it, so a policy must judge the decoded value.
 */
export function decodedInput(input: unknown): unknown {
  if (typeof input !== "string") return input;
  try {
    return JSON.parse(input) as unknown;
  } catch {
    return input;
  }
}

/**
 * Destructive: the tool declared itself so in the registry (`action.destructive`), or its name
 * contains a {@link DESTRUCTIVE_WORDS} word, or an intent field says so. A declaration can only
 * add: `destructive: false` does not exempt a tool called `drop_table`.
 */
export function isDestructive(action: Action, facts: ActionFacts): boolean {
  return action.destructive === true || soundsDestructive(action.tool) || facts.destructiveIntent;
}

/** True when the action names `environment` (canonical, after aliases), or hides too much to tell. */
export function targetsEnvironment(
  facts: ActionFacts,
  environment: string,
  aliases: EnvironmentAliases,
): boolean {
  return facts.truncated || facts.environments.has(aliases.resolve(environment));
}
