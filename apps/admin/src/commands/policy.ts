import { fileURLToPath } from "node:url";
import type { Verdict } from "@agentry/core";
import type { Action } from "@agentry/governance";
import { noPositionals, parseCommand, requireFlag } from "../args.js";
import { formatDuration, keyValues, table } from "../format.js";
import { EXIT, readAll, usageError, writeJson } from "../io.js";
import type { Command } from "./command.js";

const USAGE =
  "agentry policy check --tool NAME --input JSON [--tenant T] [--user U] [--env E] [--destructive] [--json]";

/**
 * `agentry policy check`: runs the configured policy file (`AGENTRY_POLICY_FILE`, else the
 * default policy) on one action, offline, and prints the verdict and the policy that decided.
 * The action is judged as a worker judges it: tool names and values in any spelling, `--env`
 * as the task's environment, `--destructive` as the registry's declaration for the tool.
 * Exit codes: 0 allow, 3 deny, 4 require_approval; 2 for invalid JSON input; 1 for a policy
 * file the worker would refuse (including an empty policy list without `defaults.verdict`).
 */
export const policyCheckCommand: Command = {
  path: ["policy", "check"],
  usage: USAGE,
  summary:
    "Evaluate the policy file on a tool call: allow, deny (reason) or require_approval (approvers, quorum, ttl).",
  details: [
    'Uses AGENTRY_POLICY_FILE, else Agentry\'s default policy. --input is a JSON value ("-" reads stdin).',
    "--env sets the task's environment; --destructive judges the tool as one the registry declares destructive.",
    "Exit codes for scripts: 0 allow, 3 deny, 4 require_approval, 2 invalid input, 1 unreadable policy file.",
    "Runs offline, without Redis: rate-cap policies cannot count and deny (fail closed), saying so.",
  ].join("\n"),
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      tool: { type: "string" },
      input: { type: "string" },
      tenant: { type: "string" },
      user: { type: "string" },
      env: { type: "string" },
      destructive: { type: "boolean" },
    });
    noPositionals(positionals, USAGE);
    const tool = requireFlag(values.tool, "--tool", USAGE);
    let inputText = requireFlag(values.input, "--input", USAGE);
    if (inputText === "-") inputText = await readAll(ctx.io.stdin, "policy check --input");
    let input: unknown;
    try {
      input = JSON.parse(inputText);
    } catch (err) {
      throw usageError(`--input is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }

    const { DEFAULT_POLICY_FILE, SafetyValidator, loadPolicyFile } = await import("@agentry/governance");
    const policyFile = ctx.env.AGENTRY_POLICY_FILE ?? pathOf(DEFAULT_POLICY_FILE);
    const validator = new SafetyValidator({ policies: loadPolicyFile(policyFile), prefix: ctx.prefix });
    const action: Action = {
      tool,
      input,
      taskId: "policy-check",
      tenant: values.tenant ?? "default",
      userId: values.user ?? "anonymous",
      sessionId: "policy-check",
      ...(values.env ? { env: values.env } : {}),
      ...(values.destructive ? { destructive: true } : {}),
    };
    const result = await validator.validate(action);
    const code = exitCodeFor(result.verdict);
    if (values.json) {
      writeJson(ctx.io.stdout, {
        verdict: result.verdict,
        decidedBy: result.decidedBy ?? null,
        verdicts: result.verdicts,
        policyFile,
        action,
      });
      return code;
    }
    const v = result.verdict;
    ctx.io.stdout.write(
      keyValues([
        ["verdict", v.type],
        ["reason", v.type === "allow" ? undefined : v.reason],
        ["approvers", v.type === "require_approval" ? v.approvers.join(", ") : undefined],
        ["quorum", v.type === "require_approval" ? String(v.quorum) : undefined],
        ["ttl", v.type === "require_approval" ? formatDuration(v.ttlMs) : undefined],
        ["decided by", result.decidedBy ?? (v.type === "allow" ? "(no policy objected)" : undefined)],
        ["policy file", policyFile],
      ]),
    );
    if (result.verdicts.length > 0) {
      ctx.io.stdout.write("\n");
      ctx.io.stdout.write(
        table(
          ["POLICY", "VERDICT"],
          result.verdicts.map((p) => [
            p.policy,
            p.error ? `failed: ${p.error} (deny)` : verdictText(p.verdict),
          ]),
          { maxWidth: 100 },
        ),
      );
    }
    return code;
  },
};

function pathOf(url: string): string {
  return url.startsWith("file:") ? fileURLToPath(url) : decodeURIComponent(url);
}

function exitCodeFor(v: Verdict): number {
  switch (v.type) {
    case "allow":
      return EXIT.OK;
    case "deny":
      return EXIT.POLICY_DENY;
    case "require_approval":
      return EXIT.POLICY_APPROVAL;
  }
}

function verdictText(v: Verdict): string {
  switch (v.type) {
    case "allow":
      return "allow";
    case "deny":
      return `deny: ${v.reason}`;
    case "require_approval":
      return `require_approval: ${v.approvers.join(",")} quorum ${v.quorum} ttl ${formatDuration(v.ttlMs)}`;
  }
}
