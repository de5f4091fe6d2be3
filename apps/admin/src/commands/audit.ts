import { resolve } from "node:path";
import type { AuditEntry, VerifyResult } from "@agentry/governance";
import { noPositionals, parseCommand, requireFlag } from "../args.js";
import { parseCount, summarize, table, truncate } from "../format.js";
import { CliError, EXIT, usageError, writeJson } from "../io.js";
import type { Command } from "./command.js";

const TAIL_USAGE = "agentry audit tail [-n N] [--task ID] [--json]";
const VERIFY_USAGE = "agentry audit verify [--anchors FILE | --file FILE] [--json]";
const EXPORT_USAGE = "agentry audit export --out FILE [--json]";
const ANCHOR_USAGE = "agentry audit anchor --out FILE [--json]";

/** `agentry audit tail`: the last entries of the shared audit log. */
export const auditTailCommand: Command = {
  path: ["audit", "tail"],
  usage: TAIL_USAGE,
  summary: "Show the last N audit entries (default 20), optionally one task's.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      n: { type: "string", short: "n" },
      task: { type: "string" },
    });
    noPositionals(positionals, TAIL_USAGE);
    const n = values.n === undefined ? 20 : parseCount(values.n, "-n");
    const audit = await ctx.audit();
    const entries = n === 0 ? [] : await audit.tail(n, values.task ? { taskId: values.task } : {});
    if (values.json) {
      writeJson(ctx.io.stdout, entries);
      return EXIT.OK;
    }
    if (entries.length === 0) {
      ctx.io.stderr.write(
        values.task ? `no audit entries for task ${values.task}\n` : "the audit log is empty\n",
      );
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
 * `agentry audit verify`: walks the whole chain as of one snapshot (or a JSONL export with
 * `--file`), checking MACs with `AGENTRY_AUDIT_KEY` and, with `--anchors`, every anchor of the
 * file. Exit 0 "audit chain intact: N entries, authenticated|unauthenticated"; exit 1 naming the
 * first problem.
 */
export const auditVerifyCommand: Command = {
  path: ["audit", "verify"],
  usage: VERIFY_USAGE,
  summary: "Verify the audit chain (and its anchors): exit 0 when intact, 1 naming the first problem.",
  details:
    "--anchors checks the log against an anchors file written by `agentry audit anchor` (entries deleted, truncated, reordered or replaced). " +
    "--file verifies a JSONL export (from `agentry audit export`) on its own, without Redis. " +
    "Set AGENTRY_AUDIT_KEY (and AGENTRY_AUDIT_PREVIOUS_KEYS after a rotation) to check who wrote the entries; without it the chain is reported unauthenticated.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      file: { type: "string" },
      anchors: { type: "string" },
    });
    noPositionals(positionals, VERIFY_USAGE);
    if (values.file && values.anchors)
      throw usageError(`--file and --anchors do not go together (usage: ${VERIFY_USAGE})`);
    let result: VerifyResult;
    if (values.file) {
      const file = resolve(values.file);
      const { AuditKeyring, verifyJsonl } = await import("@agentry/governance");
      result = await verifyJsonl(file, { keys: new AuditKeyring(ctx.auditKeys()) }).catch(
        (err: NodeJS.ErrnoException) => {
          throw new CliError(`cannot read ${file}: ${err.message}`, { cause: err });
        },
      );
    } else if (values.anchors) {
      const file = resolve(values.anchors);
      const audit = await ctx.audit();
      result = await audit.verifyWithAnchors(file).catch((err: NodeJS.ErrnoException) => {
        if (typeof err?.code === "string" && err.syscall)
          throw new CliError(`cannot read ${file}: ${err.message}`, { cause: err });
        throw err;
      });
    } else {
      result = await (await ctx.audit()).verify();
    }
    if (!result.ok) throw new CliError(brokenMessage(result), { result });
    if (values.json) writeJson(ctx.io.stdout, result);
    else {
      const anchors = values.anchors
        ? `, consistent with ${result.anchors} anchor${result.anchors === 1 ? "" : "s"}`
        : "";
      ctx.io.stdout.write(
        `audit chain intact: ${result.count} entries, ${result.authenticated ? "authenticated" : "unauthenticated"}${anchors}\n`,
      );
      if (!result.authenticated) {
        ctx.io.stderr.write(
          "warning: AGENTRY_AUDIT_KEY is not set: the links were checked, but anyone with Redis access could have rewritten them\n",
        );
      }
    }
    return EXIT.OK;
  },
};

/**
 * `agentry audit anchor`: appends one authenticated checkpoint of the current head to FILE,
 * after verifying the entries written since the file's previous anchor of this log. Run it
 * periodically and ship the file out of Redis's reach.
 */
export const auditAnchorCommand: Command = {
  path: ["audit", "anchor"],
  usage: ANCHOR_USAGE,
  summary:
    "Append an authenticated checkpoint of the audit head to FILE (run it periodically, keep FILE outside Redis).",
  details:
    "Needs AGENTRY_AUDIT_KEY. Verifies the entries since the file's last anchor first and writes nothing (exit 1) when they do not hold. " +
    "`agentry audit verify --anchors FILE` then fails when anchored entries were deleted, truncated, reordered or replaced.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, { out: { type: "string" } });
    noPositionals(positionals, ANCHOR_USAGE);
    const file = resolve(requireFlag(values.out, "--out", ANCHOR_USAGE));
    if (!ctx.env.AGENTRY_AUDIT_KEY)
      throw new CliError("AGENTRY_AUDIT_KEY is not set: an anchor must be authenticated");
    const audit = await ctx.audit();
    const result = await audit.anchor(file).catch((err: NodeJS.ErrnoException) => {
      if (typeof err?.code === "string" && err.syscall)
        throw new CliError(`cannot use ${file}: ${err.message}`, { cause: err });
      throw err;
    });
    if (!result.ok) throw new CliError(`not anchored: ${brokenMessage(result)}`, { result });
    if (values.json) writeJson(ctx.io.stdout, { file, ...result.anchor });
    else
      ctx.io.stdout.write(
        `anchored seq ${result.anchor.seq} (hash ${result.anchor.hash.slice(0, 16)}…) at ${result.anchor.time} to ${file}\n`,
      );
    return EXIT.OK;
  },
};

/** The one line naming a verification's first problem. */
function brokenMessage(result: Extract<VerifyResult, { ok: false }>): string {
  const bad = result.firstBad;
  const detail = bad.detail ? ` (${bad.detail})` : "";
  if (bad.reason === "bad-anchor")
    return `audit anchors refused${bad.id ? ` at ${bad.id}` : ""}: bad-anchor${detail}`;
  const where = bad.id ? `seq ${bad.seq} (id ${bad.id})` : `seq ${bad.seq}`;
  return `audit chain broken at ${where}: ${bad.reason}${detail}; ${result.count} entries before it verified`;
}

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
    else
      ctx.io.stdout.write(`exported ${exported.count} entries (up to seq ${exported.lastSeq}) to ${file}\n`);
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
      const what =
        v.type === "deny"
          ? `deny: ${v.reason}`
          : v.type === "require_approval"
            ? `require_approval (${v.approvers.join(",")}, quorum ${v.quorum})`
            : "allow";
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
