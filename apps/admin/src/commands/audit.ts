import { resolve } from "node:path";
import { verifyJsonl, type AuditEntry, type VerifyResult } from "@agentry/governance";
import { noPositionals, parseCommand, requireFlag } from "../args.js";
import { parseCount, summarize, table, truncate } from "../format.js";
import { CliError, EXIT, writeJson } from "../io.js";
import type { Command } from "./command.js";

const TAIL_USAGE = "agentry audit tail [-n N] [--task ID] [--json]";
const VERIFY_USAGE = "agentry audit verify [--file FILE] [--json]";
const EXPORT_USAGE = "agentry audit export --out FILE [--json]";

/** `agentry audit tail`: the last entries of the shared audit log. */
export const auditTailCommand: Command = {
  path: ["audit", "tail"],
  usage: TAIL_USAGE,
  summary: "Show the last N audit entries (default 20), optionally one task's.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, { n: { type: "string", short: "n" }, task: { type: "string" } });
    noPositionals(positionals, TAIL_USAGE);
    const n = values.n === undefined ? 20 : parseCount(values.n, "-n");
    const audit = await ctx.audit();
    const entries = n === 0 ? [] : await audit.tail(n, values.task ? { taskId: values.task } : {});
    if (values.json) {
      writeJson(ctx.io.stdout, entries);
      return EXIT.OK;
    }
    if (entries.length === 0) {
      ctx.io.stderr.write(values.task ? `no audit entries for task ${values.task}\n` : "the audit log is empty\n");
      return EXIT.OK;
    }
    ctx.io.stdout.write(
      table(
        ["SEQ", "TIME", "TYPE", "TASK", "SUMMARY"],
        entries.map((e) => [String(e.seq), e.ts, e.type, e.taskId ?? "-", safeSummary(e)]),
        { maxWidth: 80 },
      ),
    );
    return EXIT.OK;
  },
};

/**
 * `agentry audit verify`: walks the whole chain (or a JSONL export with `--file`).
 * Exit 0 "audit chain intact: N entries"; exit 1 naming the first broken entry.
 */
export const auditVerifyCommand: Command = {
  path: ["audit", "verify"],
  usage: VERIFY_USAGE,
  summary: "Verify the audit hash chain: exit 0 when intact, 1 naming the first broken entry.",
  details: "--file verifies a JSONL export (from `agentry audit export`) on its own, without Redis.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, { file: { type: "string" } });
    noPositionals(positionals, VERIFY_USAGE);
    let result: VerifyResult;
    if (values.file) {
      const file = resolve(values.file);
      result = await verifyJsonl(file).catch((err: NodeJS.ErrnoException) => {
        throw new CliError(`cannot read ${file}: ${err.message}`, { cause: err });
      });
    } else {
      result = await (await ctx.audit()).verify();
    }
    if (!result.ok) {
      const bad = result.firstBad;
      const where = bad.id ? `seq ${bad.seq} (id ${bad.id})` : `seq ${bad.seq}`;
      throw new CliError(
        `audit chain broken at ${where}: ${bad.reason}${bad.detail ? ` (${bad.detail})` : ""}; ${result.count} entries before it verified`,
        { result },
      );
    }
    if (values.json) writeJson(ctx.io.stdout, result);
    else ctx.io.stdout.write(`audit chain intact: ${result.count} entries\n`);
    return EXIT.OK;
  },
};

/** `agentry audit export`: the chain as JSONL, verifiable on its own with `audit verify --file`. */
export const auditExportCommand: Command = {
  path: ["audit", "export"],
  usage: EXPORT_USAGE,
  summary: "Export the audit log as JSONL (one entry per line, exactly as hashed).",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, { out: { type: "string" } });
    noPositionals(positionals, EXPORT_USAGE);
    const file = resolve(requireFlag(values.out, "--out", EXPORT_USAGE));
    const audit = await ctx.audit();
    const exported = await audit.exportJsonl(file).catch((err: unknown) => {
      const e = err as NodeJS.ErrnoException;
      if (typeof e?.code === "string" && e.code.startsWith("E") && e.syscall) {
        throw new CliError(`cannot write ${file}: ${e.message}`, { cause: err });
      }
      throw err;
    });
    if (values.json) writeJson(ctx.io.stdout, { file, ...exported });
    else ctx.io.stdout.write(`exported ${exported.count} entries (up to seq ${exported.lastSeq}) to ${file}\n`);
    return EXIT.OK;
  },
};

/** {@link entrySummary}, falling back to the raw data for entries written by other versions. */
function safeSummary(e: AuditEntry): string {
  try {
    return entrySummary(e) ?? summarize((e as { data?: unknown }).data, 70);
  } catch {
    return summarize((e as { data?: unknown }).data, 70);
  }
}

/** One line saying what an entry records. */
export function entrySummary(e: AuditEntry): string {
  switch (e.type) {
    case "request":
      return `prompt: ${truncate(e.data.prompt ?? summarize(e.data.input), 60)}`;
    case "decision": {
      const tools = e.data.toolUses?.map((t) => t.name).join(", ");
      return `step ${e.data.step}: ${tools ? `tools ${tools}` : truncate(e.data.text ?? e.data.stopReason ?? "", 60)}`;
    }
    case "action":
      return `${e.data.tool} ${summarize(e.data.input, 30)} → ${e.data.outcome}${e.data.error ? `: ${e.data.error}` : ""}`;
    case "policy_verdict": {
      const v = e.data.verdict;
      const what = v.type === "deny" ? `deny: ${v.reason}` : v.type === "require_approval" ? `require_approval (${v.approvers.join(",")}, quorum ${v.quorum})` : "allow";
      return `${e.data.tool}: ${what}${e.data.decidedBy ? ` [${e.data.decidedBy}]` : ""}`;
    }
    case "approval_requested":
      return `${e.data.approvalId} for ${e.data.tool} (approvers ${e.data.approvers.join(",")}, quorum ${e.data.quorum})`;
    case "approval_decided":
      return `${e.data.approvalId} ${e.data.status} by ${e.data.decisions.map((d) => d.approver).join(", ")}`;
    case "approval_vote":
      return `${e.data.approvalId} ${e.data.outcome} by ${e.data.approver}${e.data.quorum === undefined ? "" : ` (${e.data.approvals}/${e.data.quorum})`}${e.data.reason ? `: ${e.data.reason}` : ""}`;
    case "approval_expired":
      return `${e.data.approvalId} expired`;
    case "approval_cancelled":
      return `${e.data.approvalId} cancelled: ${e.data.reason}`;
    case "approval_refused":
      return `${e.data.approvalId} refused${e.data.approver ? ` for ${e.data.approver}` : ""}: ${e.data.reason}`;
    case "budget":
      return `${e.data.event}${e.data.scope ? ` ${e.data.scope}` : ""}${e.data.tokens === undefined ? "" : ` ${e.data.tokens} tokens`}${e.data.costMicroUsd === undefined ? "" : ` ${e.data.costMicroUsd} micro-USD`}`;
    case "response":
      return truncate(e.data.text ?? e.data.stopReason ?? "", 70);
    case "failure":
      return `[${e.data.code}] ${e.data.message}`;
  }
}
