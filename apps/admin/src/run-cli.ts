import { AgentryError, parseEnv, type ErrorCode } from "@agentry/core";
import { CliContext, isRedisDown } from "./context.js";
import { CliError, EXIT, oneLine, writeJson, type CliIo } from "./io.js";
import {
  approvalsApproveCommand,
  approvalsListCommand,
  approvalsRejectCommand,
  approvalsShowCommand,
} from "./commands/approvals.js";
import { auditAnchorCommand, auditExportCommand, auditTailCommand, auditVerifyCommand } from "./commands/audit.js";
import { budgetSetCommand, budgetShowCommand } from "./commands/budget.js";
import type { Command } from "./commands/command.js";
import { keysGenerateCommand } from "./commands/keys.js";
import { policyCheckCommand } from "./commands/policy.js";
import { cancelCommand, statusCommand } from "./commands/status.js";
import { submitCommand } from "./commands/submit.js";

export type { CliIo, TextSink } from "./io.js";
export { EXIT } from "./io.js";

/** Every command, in help order. */
export const COMMANDS: readonly Command[] = [
  submitCommand,
  statusCommand,
  cancelCommand,
  approvalsListCommand,
  approvalsShowCommand,
  approvalsApproveCommand,
  approvalsRejectCommand,
  keysGenerateCommand,
  budgetSetCommand,
  budgetShowCommand,
  auditTailCommand,
  auditVerifyCommand,
  auditAnchorCommand,
  auditExportCommand,
  policyCheckCommand,
];

const HELP_TRAILER = `
Every command takes --json (stdout carries only the result; messages go to stderr).
Environment: REDIS_URL (redis://127.0.0.1:6379), AGENTRY_PREFIX (agentry), AGENTRY_POLICY_FILE,
AGENTRY_APPROVERS_FILE, HOME (for ~/.agentry/keys).
Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error,
3 / 4 policy check verdict deny / require_approval.
`;

/**
 * Runs the `agentry` command line in-process and resolves with its exit code. Never throws
 * and never calls `process.exit`: failures are written to `io.stderr` as one line
 * (`agentry: <reason>`), results to `io.stdout`. Every connection it opens is closed before
 * it resolves.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const wantsJson = argv.includes("--json");
  const fail = (message: string, exitCode: number, result?: unknown): number => {
    if (wantsJson && result !== undefined) writeJson(io.stdout, result);
    io.stderr.write(`agentry: ${oneLine(message)}\n`);
    return exitCode;
  };

  if (argv.length === 0) {
    io.stderr.write(overview());
    return EXIT.USAGE;
  }
  if (argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    const matched = argv[0] === "help" && argv.length > 1 ? findCommand(argv.slice(1)) : undefined;
    io.stdout.write(matched ? commandHelp(matched.command) : overview());
    return EXIT.OK;
  }
  const found = findCommand(argv);
  if (!found) return fail(unknownCommandMessage(argv), EXIT.USAGE);
  const rest = argv.slice(found.command.path.length);
  const beforeTerminator = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
  if (beforeTerminator.includes("--help") || beforeTerminator.includes("-h")) {
    io.stdout.write(commandHelp(found.command));
    return EXIT.OK;
  }

  let env;
  try {
    env = parseEnv(io.env);
  } catch (err) {
    return fail(AgentryError.isInstance(err) ? err.message : String(err), EXIT.FAILURE);
  }
  const ctx = new CliContext(env, io);
  try {
    return await found.command.run(ctx, rest);
  } catch (err) {
    if (err instanceof CliError) return fail(err.message, err.exitCode, err.result);
    if (isRedisDown(err)) return fail(ctx.unreachable(err).message, EXIT.FAILURE);
    if (AgentryError.isInstance(err)) return fail(err.message, exitCodeFor(err.code));
    return fail(err instanceof Error ? err.message : String(err), EXIT.FAILURE);
  } finally {
    await ctx.close();
  }
}

function findCommand(argv: string[]): { command: Command } | undefined {
  const command = COMMANDS.find((c) => c.path.every((word, i) => argv[i] === word));
  return command ? { command } : undefined;
}

function unknownCommandMessage(argv: string[]): string {
  const group = COMMANDS.filter((c) => c.path.length > 1 && c.path[0] === argv[0]);
  if (group.length > 0) {
    const subs = group.map((c) => c.path[1]).join(", ");
    return argv[1] === undefined
      ? `"${argv[0]}" needs a subcommand: ${subs} (run agentry --help)`
      : `unknown command "${argv[0]} ${argv[1]}"; ${argv[0]} has: ${subs}`;
  }
  return `unknown command "${argv[0]}" (run agentry --help)`;
}

function exitCodeFor(code: ErrorCode): number {
  return code === "INVALID_INPUT" || code === "PAYLOAD_TOO_LARGE" ? EXIT.USAGE : EXIT.FAILURE;
}

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.path.join(" ").length));
  const lines = COMMANDS.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`);
  return `Usage: agentry <command> [options]\n\nCommands:\n${lines.join("\n")}\n${HELP_TRAILER}\nRun \`agentry <command> --help\` for a command's options.\n`;
}

function commandHelp(c: Command): string {
  return `Usage: ${c.usage}\n\n${c.summary}\n${c.details ? `\n${c.details}\n` : ""}${HELP_TRAILER}`;
}
