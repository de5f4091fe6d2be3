import { AgentryError, packageVersion, type ErrorCode } from "@agentry/core/base";
import { CliError, EXIT, oneLine, writeJson, type CliIo } from "./io.js";
import {
  approvalsApproveCommand,
  approvalsListCommand,
  approvalsRejectCommand,
  approvalsShowCommand,
} from "./commands/approvals.js";
import {
  auditAnchorCommand,
  auditArchiveCommand,
  auditExportCommand,
  auditTailCommand,
  auditVerifyCommand,
} from "./commands/audit.js";
import { budgetSetCommand, budgetShowCommand } from "./commands/budget.js";
import type { Command } from "./commands/command.js";
import { keysGenerateCommand } from "./commands/keys.js";
import { policyCheckCommand } from "./commands/policy.js";
import { cancelCommand, statusCommand } from "./commands/status.js";
import { submitCommand } from "./commands/submit.js";
import { tenantsSetCommand, tenantsShowCommand } from "./commands/tenants.js";
import { watchCommand } from "./commands/watch.js";
import { closest, didYouMean, escapeControls, shown } from "./suggest.js";

export type { CliIo, TextSink } from "./io.js";
export { EXIT } from "./io.js";

/** Every command, in help order. */
export const COMMANDS: readonly Command[] = [
  submitCommand,
  watchCommand,
  statusCommand,
  cancelCommand,
  approvalsListCommand,
  approvalsShowCommand,
  approvalsApproveCommand,
  approvalsRejectCommand,
  keysGenerateCommand,
  budgetSetCommand,
  budgetShowCommand,
  tenantsSetCommand,
  tenantsShowCommand,
  auditTailCommand,
  auditVerifyCommand,
  auditAnchorCommand,
  auditArchiveCommand,
  auditExportCommand,
  policyCheckCommand,
];

/**
 * One line per command group, for `agentry --help` and `agentry <group> --help`. Every group
 * (first word of a command with two words) has one; a test holds the two lists together.
 */
export const GROUPS: Readonly<Record<string, string>> = {
  approvals: "Review and decide the approvals that paused tasks wait for.",
  keys: "Manage approvers' signing keys.",
  budget: "Set and show token and dollar budgets (global, per tenant, user or session).",
  tenants: "Cap and weight tenants' share of the workers, and see their running and waiting tasks.",
  audit: "Read, verify, anchor and export the hash-chained audit log.",
  policy: "Evaluate the safety policy file offline.",
};

const HELP_TRAILER = `
Every command takes --json (stdout carries only the result; messages go to stderr) and --help.
Environment: REDIS_URL (redis://127.0.0.1:6379), AGENTRY_PREFIX (agentry), AGENTRY_POLICY_FILE,
AGENTRY_APPROVERS_FILE, AGENTRY_AUDIT_KEY, AGENTRY_FAIR_SHARE (on), HOME (for ~/.agentry/keys).
Exit codes: ${EXIT.OK} success, ${EXIT.FAILURE} failure (one-line reason on stderr; a failed task), ${EXIT.USAGE} usage error,
${EXIT.POLICY_DENY} / ${EXIT.POLICY_APPROVAL} policy check verdict deny / require_approval,
${EXIT.WAIT_TIMEOUT} submit --wait / --follow or watch timed out (the task keeps running).
`;

const HELP_FLAGS = new Set(["--help", "-h"]);

/** The version of this CLI (apps/admin/package.json: the same relative path from src/ and dist/). */
export function cliVersion(): string {
  return packageVersion(new URL("../package.json", import.meta.url));
}

/**
 * Runs the `agentry` command line in-process and resolves with its exit code. Never throws
 * and never calls `process.exit`: failures are written to `io.stderr` as one line
 * (`agentry: <reason>`), results to `io.stdout`. Every connection it opens is closed before
 * it resolves. Help (`agentry`, `--help`, `help <topic>`, `<group>`, `<group> --help`,
 * `<command> --help`) goes to stdout with exit 0, like gh and kubectl.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const wantsJson = argv.includes("--json");
  const fail = (message: string, exitCode: number, result?: unknown): number => {
    if (wantsJson && result !== undefined) writeJson(io.stdout, result);
    io.stderr.write(`agentry: ${escapeControls(oneLine(message))}\n`);
    return exitCode;
  };

  const first = argv[0];
  if (first === undefined || HELP_FLAGS.has(first)) {
    io.stdout.write(overview());
    return EXIT.OK;
  }
  if (first === "--version" || first === "version") {
    if (argv.length > 1 && !(argv.length === 2 && argv[1] === "--json")) {
      return fail(
        `unexpected argument ${shown(argv[1] as string)} (usage: agentry version [--json])`,
        EXIT.USAGE,
      );
    }
    if (wantsJson) writeJson(io.stdout, { version: cliVersion() });
    else io.stdout.write(`agentry ${cliVersion()}\n`);
    return EXIT.OK;
  }
  if (first === "help") {
    if (argv.length === 1) {
      io.stdout.write(overview());
      return EXIT.OK;
    }
    const topic = resolve(argv.slice(1));
    if (topic.kind === "command" && topic.rest.length === 0) io.stdout.write(commandHelp(topic.command));
    else if (topic.kind === "group" && topic.rest.length === 0) io.stdout.write(groupHelp(topic.group));
    else
      return fail(
        topic.kind === "unknown"
          ? topic.message
          : `no help topic ${shown(argv.slice(1).join(" "))} (run agentry --help)`,
        EXIT.USAGE,
      );
    return EXIT.OK;
  }

  const found = resolve(argv);
  if (found.kind === "unknown") return fail(found.message, EXIT.USAGE);
  if (found.kind === "group") {
    io.stdout.write(groupHelp(found.group));
    return EXIT.OK;
  }
  const rest = found.rest;
  const beforeTerminator = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
  if (beforeTerminator.some((a) => HELP_FLAGS.has(a))) {
    io.stdout.write(commandHelp(found.command));
    return EXIT.OK;
  }

  // What running a command needs (zod for the environment, ioredis and governance through the
  // context) is loaded only now: help and --version never load it.
  const [{ parseEnv }, { CliContext, isRedisDown }] = await Promise.all([
    import("@agentry/core"),
    import("./context.js"),
  ]);
  let env;
  try {
    env = parseEnv(io.env);
  } catch (err) {
    return fail(AgentryError.isInstance(err) ? err.message : String(err), EXIT.FAILURE);
  }
  const command = found.command;
  // Loaded only for a traced command with an OTLP endpoint set: other runs never load the SDK.
  const tracing = command.traced
    ? await (await import("./tracing.js")).startCliTracing(env, cliVersion())
    : undefined;
  const ctx = new CliContext(env, io, tracing);
  try {
    const run = () => command.run(ctx, rest);
    return await (tracing ? tracing.run(`agentry ${command.path.join(" ")}`, run) : run());
  } catch (err) {
    if (err instanceof CliError) return fail(err.message, err.exitCode, err.result);
    if (isRedisDown(err)) return fail(ctx.unreachable(err).message, EXIT.FAILURE);
    if (AgentryError.isInstance(err)) return fail(err.message, exitCodeFor(err.code));
    return fail(err instanceof Error ? err.message : String(err), EXIT.FAILURE);
  } finally {
    await ctx.close();
    // Every span is exported before the process exits.
    await tracing?.shutdown();
  }
}

/** What the words of a command line name. */
type Resolved =
  | { kind: "command"; command: Command; rest: string[] }
  /** A group alone, or followed only by --help / -h (and --json, which help ignores). */
  | { kind: "group"; group: string; rest: string[] }
  | { kind: "unknown"; message: string };

function resolve(argv: string[]): Resolved {
  const command = COMMANDS.find((c) => c.path.every((word, i) => argv[i] === word));
  if (command) return { kind: "command", command, rest: argv.slice(command.path.length) };
  const [first = "", second] = argv;
  const group = groupCommands(first);
  if (group.length > 0) {
    const rest = argv.slice(1);
    if (second === undefined || rest.every((a) => HELP_FLAGS.has(a) || a === "--json"))
      return { kind: "group", group: first, rest: [] };
    const subs = group.map((c) => c.path[1] as string);
    if (second.startsWith("-")) {
      return {
        kind: "unknown",
        message: `"${first}" needs a command before ${shown(second)}: ${subs.join(", ")} (run agentry ${first} --help)`,
      };
    }
    const near = closest(
      second,
      group.map((c) => ({ name: c.path[1] as string, label: c.path.join(" ") })),
    );
    return {
      kind: "unknown",
      message: `unknown command ${shown(`${first} ${second}`)}${didYouMean(near)} (${first} has: ${subs.join(", ")})`,
    };
  }
  if (first.startsWith("-")) {
    const near = closest(
      first,
      ["--help", "--version"].map((f) => ({ name: f, label: f })),
    );
    return {
      kind: "unknown",
      message: `unknown flag ${shown(first)}${didYouMean(near)} (run agentry --help)`,
    };
  }
  return {
    kind: "unknown",
    message: `unknown command ${shown(first)}${didYouMean(closest(first, topLevelNames()))} (run agentry --help)`,
  };
}

/** The commands of a group (`approvals` → list, show, approve, reject), in help order. */
function groupCommands(group: string): Command[] {
  return COMMANDS.filter((c) => c.path.length > 1 && c.path[0] === group);
}

/**
 * What a first word is compared with: commands, groups, `help`, `version`, and the second word of
 * grouped commands, suggested in full (`agentry verify` → "audit verify").
 */
function topLevelNames(): { name: string; label: string }[] {
  const words = [...new Set(COMMANDS.map((c) => c.path[0] as string)), "help", "version"];
  const inGroups = COMMANDS.filter((c) => c.path.length > 1).map((c) => ({
    name: c.path[1] as string,
    label: c.path.join(" "),
  }));
  return [...words.map((w) => ({ name: w, label: w })), ...inGroups];
}

function exitCodeFor(code: ErrorCode): number {
  return code === "INVALID_INPUT" || code === "PAYLOAD_TOO_LARGE" ? EXIT.USAGE : EXIT.FAILURE;
}

function overview(): string {
  const entries = COMMANDS.map((c) => ({ name: c.path.join(" "), summary: c.summary }));
  entries.push({ name: "version", summary: "Print the version of this CLI (also --version)." });
  const width = Math.max(...entries.map((e) => e.name.length));
  const lines = entries.map((e) => `  ${e.name.padEnd(width)}  ${e.summary}`);
  const groups = Object.entries(GROUPS).map(([name, summary]) => `  ${name.padEnd(width)}  ${summary}`);
  return (
    `Usage: agentry <command> [options]\n\nCommands:\n${lines.join("\n")}\n\nCommand groups (\`agentry <group>\` lists their commands):\n` +
    `${groups.join("\n")}\n${HELP_TRAILER}\nRun \`agentry <command> --help\` for a command's options.\n`
  );
}

function groupHelp(group: string): string {
  const commands = groupCommands(group);
  const width = Math.max(...commands.map((c) => (c.path[1] as string).length));
  const lines = commands.map((c) => `  ${(c.path[1] as string).padEnd(width)}  ${c.summary}`);
  const summary = GROUPS[group] ?? "";
  return `Usage: agentry ${group} <command> [options]\n\n${summary}\n\nCommands:\n${lines.join("\n")}\n${HELP_TRAILER}\nRun \`agentry ${group} <command> --help\` for a command's options.\n`;
}

function commandHelp(c: Command): string {
  return `Usage: ${c.usage}\n\n${c.summary}\n${c.details ? `\n${c.details}\n` : ""}${HELP_TRAILER}`;
}
