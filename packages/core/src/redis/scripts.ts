import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ChainableCommander, Cluster, Redis } from "ioredis";
import { AgentryError, isNoScriptError } from "../errors/agentry-error.js";

/** A value a script takes in ARGV (ioredis sends numbers as their decimal text, Buffers as bytes). */
export type ScriptArg = string | number | Buffer;

/** A client a script runs on: one server, or a Redis Cluster (every key of a call must share a slot). */
export type ScriptClient = Redis | Cluster;

/**
 * The call signature of one script, written as a function type over its KEYS and ARGV tuples and
 * its reply, e.g. `(keys: [order: string, seq: string], args: [taskId: string]) => number`.
 * (Declared through a method so that tuples of any length satisfy the constraint.)
 */
export type ScriptSignature = {
  signature(keys: readonly string[], args: readonly ScriptArg[]): unknown;
}["signature"];

/** Where a script's source is, relative to the defining module, and how it replies. */
export interface ScriptSource {
  /** The file name: `<verb-noun>-<number of keys>.lua`, or `<verb-noun>.lua` for a variable number of keys. */
  file: string;
  /** `buffer` returns bulk strings as Buffers (binary payloads). @defaultValue "string" */
  replies?: "string" | "buffer";
}

/** Runs one script on a client, defining it there first (once per client). */
export type ScriptCall<S extends ScriptSignature> = ((
  redis: ScriptClient,
  keys: Parameters<S>[0],
  args: Parameters<S>[1],
) => Promise<ReturnType<S>>) & {
  /**
   * Defines the script on a client, so pipelines created from it afterwards can {@link queue} it.
   * Idempotent.
   */
  defineOn(redis: ScriptClient): void;
  /**
   * Queues one call on a pipeline whose client had the script defined ({@link defineOn}) before
   * the pipeline was created; its reply comes from `exec()`. ioredis loads the script on the
   * server before the pipeline when it has not sent it on that connection yet.
   */
  queue(pipeline: ChainableCommander, keys: Parameters<S>[0], args: Parameters<S>[1]): void;
  /**
   * Loads the script into the server's script cache (`SCRIPT LOAD`, on every master of a
   * Cluster). For a transaction that met `NOSCRIPT`: inside MULTI/EXEC the client cannot resend
   * the script, so the caller loads it and runs the transaction again.
   */
  load(redis: ScriptClient): Promise<void>;
};

/** The scripts {@link defineScripts} defined, by name. */
export type Scripts<S extends Record<string, ScriptSignature>> = {
  readonly [N in keyof S]: ScriptCall<S[N]>;
};

/** How often a transaction loads its scripts again after `NOSCRIPT` before it gives up. */
export const MAX_SCRIPT_RELOADS = 5;

/** `take-submit-tokens-1.lua`: a kebab-case name, then the number of keys when it is fixed. */
const FILE_NAME = /^([a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*)(?:-(\d+))?\.lua$/;

/** Command name → source of every script defined in this process, so two scripts never share a name. */
const defined = new Map<string, string>();

/** The ioredis command name of a script file: `agentry` + its name in PascalCase (`agentryTakeSubmitTokens`). */
export function scriptCommandName(file: string): string {
  return `agentry${parseFileName(file)
    .name.split("-")
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join("")}`;
}

/**
 * Loads Lua scripts that sit beside the calling module and returns a typed caller per script.
 *
 * `base` is the caller's `import.meta.url`, so a script resolves the same from `src/*.ts` (tsx,
 * vitest) as from `dist/*.js` (the build copies `.lua` files beside the JavaScript). The file name
 * says how many keys the script takes (`acquire-turn-2.lua`: two); a
 * name without a number takes any number, and the call passes `keys.length` first. Each script is
 * registered on a client with ioredis `defineCommand` the first time it runs there, as
 * `agentry<PascalCaseName>`, for pipelines ({@link ScriptCall.queue}). A call sends EVALSHA and
 * falls back to EVAL when the server does not know the script (first use, or after `SCRIPT FLUSH`
 * or a restart), so it is safe on a client that auto-pipelines. Works on Redis Cluster clients
 * too: ioredis routes each call by its keys.
 *
 * Files are read once, when the defining module loads. Throws `INTERNAL` when a file is missing,
 * is not named in that style, reads a key beyond the count in its name, or names a command
 * another script already uses; a call with the wrong number of keys for its file rejects with
 * `INTERNAL` before anything is sent.
 *
 * @example
 * const scripts = defineScripts<{
 *   enqueueTurn: (keys: [order: string, seq: string], args: [taskId: string]) => number;
 * }>(import.meta.url, { enqueueTurn: "enqueue-turn-2.lua" });
 * await scripts.enqueueTurn(redis, [orderKey, seqKey], [taskId]);
 */
export function defineScripts<S extends Record<string, ScriptSignature>>(
  base: string | URL,
  sources: { readonly [N in keyof S]: string | ScriptSource },
): Scripts<S> {
  const calls: Record<string, ScriptCall<ScriptSignature>> = {};
  for (const [name, source] of Object.entries(sources) as [string, string | ScriptSource][]) {
    const { file, replies = "string" } = typeof source === "string" ? { file: source } : source;
    calls[name] = defineScript(base, file, replies);
  }
  return calls as Scripts<S>;
}

function defineScript(
  base: string | URL,
  file: string,
  replies: "string" | "buffer",
): ScriptCall<ScriptSignature> {
  const { numberOfKeys } = parseFileName(file);
  const command = scriptCommandName(file);
  const url = new URL(file, base);
  let lua: string;
  try {
    lua = readFileSync(url, "utf8");
  } catch (err) {
    throw new AgentryError("INTERNAL", `Lua script ${url.pathname} cannot be read`, { cause: err });
  }
  const beyond =
    numberOfKeys === undefined
      ? undefined
      : [...lua.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1])).find((i) => i > numberOfKeys);
  if (beyond !== undefined) {
    throw new AgentryError("INTERNAL", `${file} is named for ${numberOfKeys} keys but reads KEYS[${beyond}]`);
  }
  const other = defined.get(command);
  if (other !== undefined && other !== lua) {
    throw new AgentryError(
      "INTERNAL",
      `Two different Lua scripts are named ${command} (${file}); script names must be unique`,
    );
  }
  defined.set(command, lua);
  const method = replies === "buffer" ? `${command}Buffer` : command;

  type Methods = Record<string, ((...a: ScriptArg[]) => unknown) | undefined>;
  const checkKeys = (keys: readonly string[]): void => {
    if (numberOfKeys !== undefined && keys.length !== numberOfKeys) {
      throw new AgentryError("INTERNAL", `${file} takes ${numberOfKeys} keys, got ${keys.length}`);
    }
  };
  const defineOn = (redis: ScriptClient): void => {
    if (typeof (redis as unknown as Methods)[method] !== "function") {
      redis.defineCommand(command, numberOfKeys === undefined ? { lua } : { lua, numberOfKeys });
    }
  };
  const argsOf = (keys: readonly string[], args: readonly ScriptArg[]): ScriptArg[] => [
    ...(numberOfKeys === undefined ? [keys.length] : []),
    ...keys,
    ...args,
  ];
  const sha = createHash("sha1").update(lua).digest("hex");
  const [evalsha, evalScript] = replies === "buffer" ? ["evalshaBuffer", "evalBuffer"] : ["evalsha", "eval"];
  const call = async (
    redis: ScriptClient,
    keys: readonly string[],
    args: readonly ScriptArg[],
  ): Promise<unknown> => {
    checkKeys(keys);
    defineOn(redis);
    // EVALSHA and EVAL, not the command defineOn added: a client that auto-pipelines queues a
    // call on a pipeline it opened earlier in the tick, which has only the commands defined
    // then (ioredis then loses the reply order of the whole pipeline). EVAL when the server
    // does not know the script (first use, a SCRIPT FLUSH, a restart) runs it and caches it.
    const methods = redis as unknown as Methods;
    const rest = [keys.length, ...keys, ...args];
    try {
      return await methods[evalsha]!.call(redis, sha, ...rest);
    } catch (err) {
      if (!isNoScriptError(err)) throw err;
      return await methods[evalScript]!.call(redis, lua, ...rest);
    }
  };
  const queue = (pipeline: ChainableCommander, keys: readonly string[], args: readonly ScriptArg[]): void => {
    checkKeys(keys);
    const run = (pipeline as unknown as Methods)[method];
    if (typeof run !== "function") {
      throw new AgentryError(
        "INTERNAL",
        `${command} is not defined on this pipeline's client: call defineOn before creating the pipeline`,
      );
    }
    run.call(pipeline, ...argsOf(keys, args));
  };
  const load = (redis: ScriptClient): Promise<void> => loadScripts(redis, [lua]);
  return Object.assign(call, { defineOn, queue, load }) as ScriptCall<ScriptSignature>;
}

/**
 * Loads Lua sources into the script cache of the server, or of every master of a Redis Cluster
 * (a SCRIPT LOAD sent through the cluster client would reach any one node). A master that is down
 * holds other slots, perhaps: only loading nowhere is an error (a key on the down master fails
 * its call again, with the server's own error).
 */
export async function loadScripts(redis: ScriptClient, sources: readonly string[]): Promise<void> {
  const targets = "nodes" in redis ? redis.nodes("master") : [redis];
  const loads = await Promise.allSettled(
    targets.map((node) => Promise.all(sources.map((lua) => node.script("LOAD", lua)))),
  );
  const failed = loads.filter((l): l is PromiseRejectedResult => l.status === "rejected");
  if (failed.length > 0 && failed.length === loads.length) throw failed[0]!.reason;
}

function parseFileName(file: string): { name: string; numberOfKeys: number | undefined } {
  const match = FILE_NAME.exec(file.slice(file.lastIndexOf("/") + 1));
  if (!match) {
    throw new AgentryError(
      "INTERNAL",
      `Lua script file ${file} must be named <kebab-case-name>[-<number of keys>].lua`,
    );
  }
  return { name: match[1]!, numberOfKeys: match[2] === undefined ? undefined : Number(match[2]) };
}
