import { readFile } from "node:fs/promises";
import { AgentryError, systemClock } from "@agentry/core/base";
import type {
  ApprovalStore,
  ApprovalRecord,
  ApprovalStatus,
  DecisionOutcome,
  SignedDecision,
} from "@agentry/governance";
import { noPositionals, onePositional, parseCommand, requireFlag } from "../args.js";
import { expiresIn, isoTime, keyValues, parseCount, summarize, table } from "../format.js";
import { CliError, EXIT, usageError, writeJson } from "../io.js";
import type { CliContext } from "../context.js";
import type { Command } from "./command.js";

const LIST_USAGE =
  "agentry approvals list [--status pending|approved|rejected|expired|cancelled|all] [--limit N] [--json]";
const SHOW_USAGE = "agentry approvals show <approvalId> [--json]";
const APPROVE_USAGE =
  "agentry approvals approve <approvalId> --as <approver> [--key FILE] [--reason TEXT] [--json]";
const REJECT_USAGE =
  "agentry approvals reject <approvalId> --as <approver> --reason TEXT [--key FILE] [--json]";

const STATUSES = ["pending", "approved", "rejected", "expired", "cancelled", "all"] as const;

/** `agentry approvals list`: pending approvals (or another status) as a table. */
export const approvalsListCommand: Command = {
  path: ["approvals", "list"],
  usage: LIST_USAGE,
  summary: "List approvals (default: pending) with task, tool, input, approvers, decisions, expiry.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      status: { type: "string" },
      limit: { type: "string" },
    });
    noPositionals(positionals, LIST_USAGE);
    const status = values.status ?? "pending";
    if (!(STATUSES as readonly string[]).includes(status))
      throw usageError(`--status must be one of ${STATUSES.join(", ")} (got "${status}")`);
    const limit = values.limit === undefined ? 100 : parseCount(values.limit, "--limit");
    const perShard = await Promise.all(
      (await ctx.approvals()).map((store) =>
        store.list({ ...(status === "all" ? {} : { status: status as ApprovalStatus }), limit }),
      ),
    );
    // As one store lists them: pending by expiry, otherwise newest first.
    const records = perShard
      .flat()
      .sort((a, b) => (status === "pending" ? a.expiresAt - b.expiresAt : b.createdAt - a.createdAt))
      .slice(0, limit);
    if (values.json) {
      writeJson(ctx.io.stdout, records);
      return EXIT.OK;
    }
    if (records.length === 0) {
      ctx.io.stderr.write(`no ${status === "all" ? "" : `${status} `}approvals\n`);
      return EXIT.OK;
    }
    const now = systemClock.now();
    ctx.io.stdout.write(
      table(
        ["ID", "STATUS", "TASK", "TOOL", "INPUT", "APPROVERS", "DECISIONS", "EXPIRES IN"],
        records.map((r) => [
          r.id,
          r.status,
          r.taskId,
          r.action.tool,
          summarize(r.action.input),
          r.approvers.join(","),
          decisionsSummary(r),
          r.status === "pending" ? expiresIn(r.expiresAt, now) : "-",
        ]),
      ),
    );
    return EXIT.OK;
  },
};

/** `agentry approvals show`: one approval in full. */
export const approvalsShowCommand: Command = {
  path: ["approvals", "show"],
  usage: SHOW_USAGE,
  summary: "Show one approval: action, approvers, quorum, decisions, expiry.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {});
    const id = onePositional(positionals, "approval id", SHOW_USAGE);
    const { record } = await requireApproval(ctx, id);
    if (values.json) {
      writeJson(ctx.io.stdout, record);
      return EXIT.OK;
    }
    ctx.io.stdout.write(
      keyValues([
        ["approval", record.id],
        ["status", record.status],
        ["task", record.taskId],
        ["tool", record.action.tool],
        ["input", JSON.stringify(record.action.input)],
        ["tenant", record.action.tenant],
        ["user", record.action.userId],
        ["reason", record.reason || undefined],
        ["approvers", record.approvers.join(", ")],
        ["quorum", String(record.quorum)],
        ["decisions", decisionsSummary(record)],
        ["created", isoTime(record.createdAt)],
        ["expires", `${isoTime(record.expiresAt)} (${expiresIn(record.expiresAt, systemClock.now())})`],
        ...record.decisions.map((d, i): [string, string] => [
          `decision ${i + 1}`,
          `${d.outcome} by ${d.approver} at ${isoTime(d.decidedAt)}${d.reason ? `: ${d.reason}` : ""}`,
        ]),
      ]),
    );
    return EXIT.OK;
  },
};

function decideCommand(outcome: DecisionOutcome): Command {
  const usage = outcome === "approve" ? APPROVE_USAGE : REJECT_USAGE;
  return {
    path: ["approvals", outcome],
    usage,
    summary:
      outcome === "approve"
        ? "Approve a pending approval, signed with the approver's private key."
        : "Reject a pending approval (a veto), signed with the approver's private key; --reason is required.",
    details: [
      "The private key is read from --key FILE, else ~/.agentry/keys/<approver>.key (see `agentry keys generate`).",
      "The decision {approvalId, outcome, approver, decidedAt} is signed with Ed25519; when AGENTRY_APPROVERS_FILE",
      "is set the signature is checked against it before anything is recorded (workers check it again on resume).",
    ].join("\n"),
    run: (ctx, argv) => decide(ctx, argv, outcome, usage),
  };
}

/** `agentry approvals approve`. */
export const approvalsApproveCommand = decideCommand("approve");
/** `agentry approvals reject`. */
export const approvalsRejectCommand = decideCommand("reject");

async function decide(
  ctx: CliContext,
  argv: string[],
  outcome: DecisionOutcome,
  usage: string,
): Promise<number> {
  const { values, positionals } = parseCommand(argv, {
    as: { type: "string" },
    key: { type: "string" },
    reason: { type: "string" },
  });
  const id = onePositional(positionals, "approval id", usage);
  const approver = requireFlag(values.as, "--as", usage);
  if (outcome === "reject" && !values.reason?.trim())
    throw usageError(`reject needs --reason TEXT (usage: ${usage})`);
  const reason = values.reason?.trim();

  const approverKeys = ctx.approverKeys();
  // Everything past "unknown id" goes through the store of the approval's shard, which records
  // and audits refusals too.
  const { store, record } = await requireApproval(ctx, id, { verify: true });

  const keyFile = values.key ?? ctx.defaultKeyFile(approver);
  const pem = await readFile(keyFile, "utf8").catch((err: NodeJS.ErrnoException) => {
    const hint = values.key ? "" : ` (run \`agentry keys generate ${approver}\` or pass --key FILE)`;
    throw new CliError(
      err.code === "ENOENT"
        ? `no private key for ${approver} at ${keyFile}${hint}`
        : `cannot read key file ${keyFile}: ${err.message}`,
      { cause: err },
    );
  });
  const { signDecision } = await import("@agentry/governance");
  let signed: SignedDecision;
  try {
    signed = signDecision(pem, {
      approvalId: id,
      outcome,
      approver,
      decidedAt: systemClock.now(),
      ...(reason ? { reason } : {}),
    });
  } catch (err) {
    throw new CliError(
      `bad key file ${keyFile}: ${AgentryError.isInstance(err) ? err.message : String(err)}`,
      { cause: err },
    );
  }
  if (!approverKeys) {
    ctx.io.stderr.write(
      `AGENTRY_APPROVERS_FILE is not set: the signature is not checked here (workers check it on resume)\n`,
    );
  }

  const result = await store.tryDecide(signed);
  switch (result.type) {
    case "decided":
    case "recorded": {
      const r = result.record;
      const approvals = result.approvals;
      const summary = {
        approvalId: id,
        taskId: r.taskId,
        approver,
        outcome,
        result: result.type,
        status: r.status,
        approvals,
        quorum: r.quorum,
        decidedAt: signed.decidedAt,
      };
      if (values.json) writeJson(ctx.io.stdout, summary);
      else if (result.type === "recorded") {
        ctx.io.stdout.write(
          `${id}: approval by ${approver} recorded (${approvals}/${r.quorum} approvals; still pending)\n`,
        );
      } else {
        ctx.io.stdout.write(
          r.status === "approved"
            ? `${id}: approved (${approvals}/${r.quorum} approvals)\n`
            : `${id}: rejected by ${approver}${reason ? `: ${reason}` : ""}\n`,
        );
        ctx.io.stderr.write(`task ${r.taskId} will resume on a worker\n`);
      }
      return EXIT.OK;
    }
    case "bad-signature":
      throw new CliError(
        `signature refused: the key in ${keyFile} is not ${approver}'s enrolled key (${ctx.env.AGENTRY_APPROVERS_FILE})`,
      );
    case "not-approver":
      if (approverKeys && !approverKeys.has(approver)) {
        throw new CliError(
          `${approver} is not an enrolled approver: no public key in ${ctx.env.AGENTRY_APPROVERS_FILE}`,
        );
      }
      throw new CliError(
        `${approver} is not an approver of ${id} (approvers: ${record.approvers.join(", ")})`,
      );
    case "already-decided":
      throw new CliError(
        result.byApprover
          ? `${approver} has already decided ${id}`
          : `approval ${id} is already ${result.status}`,
      );
    case "expired":
      throw new CliError(
        `approval ${id} expired ${expiresIn(record.expiresAt, systemClock.now()).replace(/^expired /, "")}`,
      );
    case "unknown":
      throw new CliError(`unknown approval ${id}`);
  }
}

async function requireApproval(
  ctx: CliContext,
  id: string,
  options: { verify?: boolean } = {},
): Promise<{ store: ApprovalStore; record: ApprovalRecord }> {
  const found = await ctx.approvalOf(id, options);
  if (!found) throw new CliError(`unknown approval ${id}`);
  return found;
}

function decisionsSummary(r: ApprovalRecord): string {
  const approvals = r.decisions.filter((d) => d.outcome === "approve").length;
  const rejectedBy = r.decisions.find((d) => d.outcome === "reject")?.approver;
  const names = r.decisions.map((d) => `${d.approver}:${d.outcome}`).join(",");
  return `${approvals}/${r.quorum}${rejectedBy ? ` rejected by ${rejectedBy}` : ""}${names && !rejectedBy ? ` (${names})` : ""}`;
}
