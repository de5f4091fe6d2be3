import { onePositional, parseCommand } from "../args.js";
import { isoTime, keyValues } from "../format.js";
import { AgentryError } from "@agentry/core/base";
import { CliError, EXIT, writeJson } from "../io.js";
import type { Command } from "./command.js";
import { describeProgress, errorText } from "./submit.js";

const STATUS_USAGE = "agentry status <taskId> [--json]";
const CANCEL_USAGE = "agentry cancel <taskId> [--json]";

/** `agentry status`: one task's state, prompt, attempts, approvals, result or error. */
export const statusCommand: Command = {
  path: ["status"],
  usage: STATUS_USAGE,
  summary:
    "Show a task: state (queued | running | awaiting_approval | completed | failed), prompt, result or error.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {});
    const taskId = onePositional(positionals, "task id", STATUS_USAGE);
    const status = await (await ctx.client()).status(taskId).catch(unknownTask(taskId));
    if (values.json) {
      writeJson(ctx.io.stdout, status);
      return EXIT.OK;
    }
    const approvals = status.approvalIds ?? [];
    ctx.io.stdout.write(
      keyValues([
        ["task", status.taskId],
        ["state", status.state],
        ["tenant", status.tenant],
        ["user", status.userId],
        ["session", status.sessionId],
        ["prompt", status.prompt],
        ["attempts", String(status.attempts)],
        ["created", isoTime(status.createdAt)],
        ["finished", status.finishedAt === undefined ? undefined : isoTime(status.finishedAt)],
        [
          "progress",
          status.progress && status.state !== "completed"
            ? describeProgress(status.progress)?.split("\n")[0]
            : undefined,
        ],
        ["approvals", approvals.length > 0 ? approvals.join(", ") : undefined],
        ["steps", status.result ? String(status.result.steps) : undefined],
        [
          "cost",
          status.result ? `${status.result.costMicroUsd} micro-USD (${status.result.model})` : undefined,
        ],
        ["error", status.error ? errorText(status.error) : undefined],
        ["result", status.result?.text],
      ]),
    );
    if (approvals.length > 0) {
      ctx.io.stderr.write(`decide with: agentry approvals approve|reject <approvalId> --as <approver>\n`);
    }
    return EXIT.OK;
  },
};

/** `agentry cancel`: remove a queued or parked task, or abort a running one. */
export const cancelCommand: Command = {
  path: ["cancel"],
  usage: CANCEL_USAGE,
  summary: "Cancel a task (removed if queued or parked, aborted by its worker if running).",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {});
    const taskId = onePositional(positionals, "task id", CANCEL_USAGE);
    const result = await (await ctx.client()).cancel(taskId).catch(unknownTask(taskId));
    if (values.json) writeJson(ctx.io.stdout, { taskId, ...result });
    else if (result.cancelled) ctx.io.stdout.write(`cancelled ${taskId} (was ${result.state})\n`);
    else ctx.io.stdout.write(`${taskId} already ${result.state}: nothing to cancel\n`);
    return EXIT.OK;
  },
};

/** Turns the client's `NOT_FOUND` into the CLI's one-line "unknown task" failure. */
function unknownTask(taskId: string): (err: unknown) => never {
  return (err) => {
    if (AgentryError.isInstance(err) && err.code === "NOT_FOUND")
      throw new CliError(`unknown task ${taskId}`, { cause: err });
    throw err;
  };
}
