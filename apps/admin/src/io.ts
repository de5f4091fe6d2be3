/** Where the CLI writes: anything with `write(text)` (process streams, or collectors in tests). */
export interface TextSink {
  write(chunk: string): unknown;
}

/** What {@link runCli} runs against: the environment and the three standard streams. */
export interface CliIo {
  /** The environment (`REDIS_URL`, `AGENTRY_PREFIX`, `HOME`...). Parsed once, at the edge. */
  env: NodeJS.ProcessEnv;
  /** Results only: a table, a line, or JSON with `--json`. */
  stdout: TextSink;
  /** Human messages: progress, hints, the one-line failure reason. */
  stderr: TextSink;
  /** Read by `submit -` and `policy check --input -`. @defaultValue no input */
  stdin?: AsyncIterable<string | Buffer>;
}

/**
 * Exit codes of the `agentry` command, listed in `agentry --help` and the admin README.
 * `POLICY_DENY` and `POLICY_APPROVAL` are only used by `policy check`, and `WAIT_TIMEOUT` only by
 * `submit --wait` / `--follow` and `watch`, so scripts can branch on the verdict or retry the wait.
 */
export const EXIT = {
  OK: 0,
  /** The command ran and failed: unknown id, refused decision, task failed, Redis unreachable... */
  FAILURE: 1,
  /** The command line or its input is wrong (unknown flag, missing argument, invalid JSON). */
  USAGE: 2,
  /** `policy check`: the verdict is deny. */
  POLICY_DENY: 3,
  /** `policy check`: the verdict is require_approval. */
  POLICY_APPROVAL: 4,
  /**
   * `submit --wait` / `--follow`, `watch`: the task did not finish within `--timeout` (it keeps running; a failed task
   * is `FAILURE`). 124 is what `timeout(1)` exits with, so scripts that know it read it as such.
   */
  WAIT_TIMEOUT: 124,
} as const;

/**
 * A failure the CLI reports as `agentry: <message>` (one line) on stderr with `exitCode`.
 * `result`, when set, is still printed on stdout with `--json` (e.g. a broken audit chain).
 */
export class CliError extends Error {
  readonly exitCode: number;
  readonly result: unknown;

  constructor(message: string, options: { exitCode?: number; result?: unknown; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.exitCode = options.exitCode ?? EXIT.FAILURE;
    this.result = options.result;
  }
}

/** A usage error (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(message, { exitCode: EXIT.USAGE });
}

/** Squeezes text onto one line (failure reasons must be exactly one line). */
export function oneLine(text: string): string {
  return text.replace(/\s*\r?\n\s*/g, " ").trim();
}

/** Reads the whole of stdin as UTF-8. Without stdin → usage error. */
export async function readAll(stdin: CliIo["stdin"], what: string): Promise<string> {
  if (!stdin) throw usageError(`${what}: "-" reads from stdin, but there is no stdin`);
  let text = "";
  for await (const chunk of stdin) text += typeof chunk === "string" ? chunk : chunk.toString("utf8");
  return text;
}

/** Writes a value as JSON (the `--json` form of every result). */
export function writeJson(out: TextSink, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}
