import { parseArgs, type ParseArgsConfig } from "node:util";
import { oneLine, usageError } from "./io.js";
import { closest, didYouMean, shown } from "./suggest.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Flags every command takes. */
export const COMMON_OPTIONS = {
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

/** What {@link parseCommand} returns: typed `values` and the `positionals`. */
export type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: typeof COMMON_OPTIONS & O;
    strict: true;
    allowPositionals: true;
  }>
>;

/**
 * Parses a command's arguments strictly (unknown flags and missing values are usage errors,
 * exit 2), with `--json` and `--help` added. An unknown flag is named with the closest known
 * ones (`unknown flag "--timout"; did you mean "--timeout"?`).
 */
export function parseCommand<O extends Options>(argv: string[], options: O): Parsed<O> {
  const all = { ...COMMON_OPTIONS, ...options };
  try {
    return parseArgs({ args: argv, options: all, strict: true, allowPositionals: true });
  } catch (err) {
    const unknown =
      (err as { code?: unknown }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION"
        ? unknownFlag(argv, all)
        : undefined;
    if (unknown !== undefined) throw usageError(unknown);
    throw usageError(oneLine(err instanceof Error ? err.message : String(err)));
  }
}

/** The usage message for the first flag in `argv` that `options` does not know, if any. */
function unknownFlag(argv: string[], options: Options): string | undefined {
  // A lenient parse finds the offending token itself rather than reading Node's message.
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const token = tokens.find((t) => t.kind === "option" && !(t.name in options));
  if (token?.kind !== "option") return undefined;
  // Long names only: every one-letter flag is one edit from every other.
  const known = Object.keys(options).map((name) => ({ name: `--${name}`, label: `--${name}` }));
  return `unknown flag ${shown(token.rawName)}${didYouMean(closest(token.rawName, known))}`;
}

/** The single positional argument a command needs; usage error when missing or repeated. */
export function onePositional(positionals: string[], what: string, usage: string): string {
  if (positionals.length === 0) throw usageError(`missing ${what} (usage: ${usage})`);
  if (positionals.length > 1) throw usageError(`unexpected argument "${positionals[1]}" (usage: ${usage})`);
  return positionals[0] as string;
}

/** Usage error for a flag that must be given. */
export function requireFlag<T>(value: T | undefined, flag: string, usage: string): T {
  if (value === undefined || value === "") throw usageError(`${flag} is required (usage: ${usage})`);
  return value;
}

/** Usage error when a command takes no positional arguments but got some. */
export function noPositionals(positionals: string[], usage: string): void {
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}" (usage: ${usage})`);
}
