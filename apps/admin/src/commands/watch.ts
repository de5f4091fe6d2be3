import { AgentryError } from "@agentry/core/base";
import type { AgentryClient } from "@agentry/runtime";
import { onePositional, parseCommand } from "../args.js";
import type { CliContext } from "../context.js";
import { parseSeconds } from "../format.js";
import { CliError, EXIT } from "../io.js";
import type { Command } from "./command.js";
import { describeProgress, errorText } from "./submit.js";

const USAGE = "agentry watch <taskId> [--timeout SEC] [--json]";

/** How long `watch` and `submit --follow` follow a task when `--timeout` is not given. */
export const DEFAULT_FOLLOW_MS = 300_000;

/** `agentry watch`: follow a task's stream live, printing the model's text as it is generated. */
export const watchCommand: Command = {
  path: ["watch"],
  usage: USAGE,
  summary: "Follow a task live: the model's text on stdout as it is generated, progress on stderr.",
  details: [
    "Replays the task's stream from its start (the text so far), then follows it until the task ends.",
    "Each model call's text goes to stdout as it arrives; steps are separated by a line break. A step",
    "generated again by a retried attempt is not printed twice: text it repeats is skipped, and if it",
    "departs from what was printed a note on stderr says so before its new text. Progress goes to stderr.",
    `--timeout defaults to ${DEFAULT_FOLLOW_MS / 1000} s. Exit ${EXIT.FAILURE} when the task fails, ${EXIT.WAIT_TIMEOUT} when the time runs out`,
    "(the task keeps running). --json prints one JSON object per event (progress, delta, completed, failed).",
  ].join("\n"),
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, { timeout: { type: "string" } });
    const taskId = onePositional(positionals, "task id", USAGE);
    const timeoutMs =
      values.timeout === undefined ? DEFAULT_FOLLOW_MS : parseSeconds(values.timeout, "--timeout");
    return followTask(ctx, await ctx.client(), taskId, { json: values.json === true, timeoutMs });
  },
};

/**
 * Follows a task to its end (`AgentryClient.follow`) and prints it: the model's text on stdout
 * as it arrives (rebuilt by offset, so a retried step's repeated text is not printed again),
 * progress on stderr, the final answer guaranteed on stdout. With `json`, one JSON line per
 * event. Resolves with the exit code; a failed task throws `CliError` (exit 1), a time-out too
 * (exit 124).
 */
export async function followTask(
  ctx: CliContext,
  client: AgentryClient,
  taskId: string,
  options: { json: boolean; timeoutMs: number; sessionId?: string },
): Promise<number> {
  const { stdout, stderr } = ctx.io;
  const { StreamedText } = await import("@agentry/runtime");
  const text = new StreamedText();
  /** stdout ends inside a line (text without its line break yet). */
  let open = false;
  let lastStep: number | undefined;
  const out = (s: string) => {
    if (s.length === 0) return;
    stdout.write(s);
    open = !s.endsWith("\n");
  };
  const endLine = () => {
    if (open) out("\n");
  };
  const note = (line: string) => {
    endLine();
    stderr.write(`${line}\n`);
  };
  const withSession = options.sessionId === undefined ? {} : { sessionId: options.sessionId };
  try {
    for await (const event of client.follow(taskId, { timeoutMs: options.timeoutMs })) {
      if (options.json) {
        stdout.write(`${JSON.stringify(event)}\n`);
        if (event.type === "completed") return EXIT.OK;
        if (event.type === "failed") throw new CliError(`task failed: ${errorText(event.error)}`);
        continue;
      }
      switch (event.type) {
        case "progress": {
          const line = describeProgress(event.progress);
          if (line) note(line);
          break;
        }
        case "delta": {
          const change = text.apply(event);
          if (lastStep !== undefined && lastStep !== event.step && change.kind !== "none") endLine();
          if (change.kind !== "none") lastStep = event.step;
          if (change.kind === "append") out(change.text);
          else if (change.kind === "restart") {
            note(
              `step ${event.step}: the model call was made again and answered differently; its text from the start:`,
            );
            out(change.text);
          } else if (change.kind === "gap") {
            note(`step ${event.step}: ${change.missing} characters of its text are no longer in the stream`);
            out(change.text);
          }
          break;
        }
        case "completed": {
          // The answer is always on stdout: when its text did not stream in full, it is printed whole.
          const streamed = text.text(event.result.steps);
          if (streamed !== event.result.text) {
            if (text.steps().length > 0) note("the answer in full:");
            out(event.result.text);
          }
          endLine();
          stderr.write(`completed in ${event.result.steps} step${event.result.steps === 1 ? "" : "s"}\n`);
          return EXIT.OK;
        }
        case "failed":
          endLine();
          throw new CliError(`task failed: ${errorText(event.error)}`);
      }
    }
  } catch (err) {
    if (AgentryError.isInstance(err) && err.code === "NOT_FOUND")
      throw new CliError(`unknown task ${taskId}`, { cause: err });
    throw err;
  }
  endLine();
  const state = await client
    .status(taskId)
    .then((s) => s.state)
    .catch(() => "unknown");
  const timeout = new AgentryError(
    "TIMEOUT",
    `task ${taskId} did not finish within ${options.timeoutMs / 1000} s (it is ${state})`,
  );
  if (options.json)
    stdout.write(
      `${JSON.stringify({ type: "timed_out", taskId, ...withSession, state, error: timeout.toData() })}\n`,
    );
  throw new CliError(`task timed out: ${errorText(timeout.toData())}`, { exitCode: EXIT.WAIT_TIMEOUT });
}
