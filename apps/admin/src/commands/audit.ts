import { resolve } from "node:path";
import { AgentryError } from "@agentry/core/base";
import type { AuditEntry, AuditLog, VerifyResult } from "@agentry/governance";
import { noPositionals, parseCommand, requireFlag } from "../args.js";
import { parseCount, summarize, table, truncate } from "../format.js";
import { CliError, EXIT, usageError, writeJson } from "../io.js";
import type { Command } from "./command.js";

const TAIL_USAGE = "agentry audit tail [-n N] [--task ID] [--json]";
const VERIFY_USAGE = "agentry audit verify [--anchors FILE | --file FILE] [--json]";
const EXPORT_USAGE = "agentry audit export --out FILE [--json]";
const ANCHOR_USAGE = "agentry audit anchor --out FILE [--json]";
const ARCHIVE_USAGE = "agentry audit archive --out FILE --anchors FILE [--json]";

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
    // Every chain (the global one and each queue shard's), merged by time.
    const perChain =
      n === 0
        ? []
        : await Promise.all(
            (await ctx.audits()).map((audit) => audit.tail(n, values.task ? { taskId: values.task } : {})),
          );
    const entries = perChain
      .flat()
      .sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0))
      .slice(-Math.max(n, 1));
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
    type Intact = { ok: true; count: number; anchors: number; authenticated: boolean };
    let result: Intact;
    const audits = values.file ? [] : await ctx.audits();
    const readError = (file: string) => (err: NodeJS.ErrnoException) => {
      if (typeof err?.code === "string" && err.syscall)
        throw new CliError(`cannot read ${file}: ${err.message}`, { cause: err });
      throw err;
    };
    if (values.file) {
      const file = resolve(values.file);
      const { AuditKeyring, verifyJsonl } = await import("@agentry/governance");
      const one = await verifyJsonl(file, { keys: new AuditKeyring(ctx.auditKeys()) }).catch(
        (err: NodeJS.ErrnoException) => {
          throw new CliError(`cannot read ${file}: ${err.message}`, { cause: err });
        },
      );
      if (!one.ok) throw new CliError(brokenMessage(one), { result: one });
      result = one;
    } else if (values.anchors && audits.length === 1) {
      const file = resolve(values.anchors);
      const one = await (audits[0] as AuditLog).verifyWithAnchors(file).catch(readError(file));
      if (!one.ok) throw new CliError(brokenMessage(one), { result: one });
      result = one;
    } else if (values.anchors) {
      // Every chain (the global one and each queue shard's), each against its anchors.
      const file = resolve(values.anchors);
      const { verifyChainsWithAnchors } = await import("@agentry/governance");
      const chains = await verifyChainsWithAnchors(audits, file).catch(readError(file));
      if (!chains.ok)
        throw new CliError(brokenMessage(chains, chainName(ctx, chains.stream)), { result: chains });
      for (const stream of chains.unanchored)
        ctx.io.stderr.write(
          `warning: ${file} holds no anchor of ${stream} yet: it was verified without anchors\n`,
        );
      result = chains;
    } else {
      const results: (VerifyResult & { ok: true; stream: string })[] = [];
      for (const audit of audits) {
        const one = await audit.verify();
        const before = results.reduce((n, r) => n + r.count, 0);
        if (!one.ok) {
          const failed = { ...one, count: before + one.count };
          throw new CliError(brokenMessage(failed, chainName(ctx, audit.streamKey)), { result: failed });
        }
        results.push({ ...one, stream: audit.streamKey });
      }
      result =
        results.length === 1
          ? (results[0] as Intact)
          : {
              ok: true,
              count: results.reduce((n, r) => n + r.count, 0),
              anchors: 0,
              authenticated: results.every((r) => r.authenticated),
              ...{ chains: results },
            };
    }
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
    // One line holds every chain's head: the global chain's and each queue shard's.
    const { anchorChains } = await import("@agentry/governance");
    const result = await anchorChains(await ctx.audits(), file).catch((err: NodeJS.ErrnoException) => {
      if (typeof err?.code === "string" && err.syscall)
        throw new CliError(`cannot use ${file}: ${err.message}`, { cause: err });
      throw err;
    });
    if (!result.ok)
      throw new CliError(`not anchored: ${brokenMessage(result, chainName(ctx, result.stream))}`, { result });
    const [first] = result.anchors;
    if (values.json)
      writeJson(
        ctx.io.stdout,
        result.anchors.length === 1 ? { file, ...first } : { file, chains: result.anchors },
      );
    else if (result.anchors.length === 1 && first)
      ctx.io.stdout.write(
        `anchored seq ${first.seq} (hash ${first.hash.slice(0, 16)}…) at ${first.time} to ${file}\n`,
      );
    else
      ctx.io.stdout.write(
        `anchored ${result.anchors.length} chains (${result.anchors.map((a) => `${a.stream} seq ${a.seq}`).join(", ")}) at ${first?.time} to ${file}\n`,
      );
    return EXIT.OK;
  },
};

/** The one line naming a verification's first problem; `chain` names the chain when there are several. */
function brokenMessage(result: Extract<VerifyResult, { ok: false }>, chain = ""): string {
  const bad = result.firstBad;
  const detail = bad.detail ? ` (${bad.detail})` : "";
  if (bad.reason === "bad-anchor")
    return `audit anchors refused${bad.id ? ` at ${bad.id}` : ""}: bad-anchor${detail}`;
  const where = bad.id ? `seq ${bad.seq} (id ${bad.id})` : `seq ${bad.seq}`;
  return `audit chain${chain} broken at ${where}: ${bad.reason}${detail}; ${result.count} entries before it verified`;
}

/** ` <stream>` when the deployment has several chains (queue shards, audit lanes), else nothing. */
function chainName(
  ctx: { auditPrefixes: string[]; env: { AGENTRY_AUDIT_LANES: number } },
  stream: string,
): string {
  return ctx.auditPrefixes.length * ctx.env.AGENTRY_AUDIT_LANES > 1 ? ` ${stream}` : "";
}

/** `agentry audit export`: the chain as JSONL, verifiable on its own with `audit verify --file`. */
export const auditExportCommand: Command = {
  path: ["audit", "export"],
  usage: EXPORT_USAGE,
  summary: "Export the audit log as JSONL (one entry per line, exactly as hashed).",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, { out: { type: "string" } });
    noPositionals(positionals, EXPORT_USAGE);
    const out = resolve(requireFlag(values.out, "--out", EXPORT_USAGE));
    const audits = await ctx.audits();
    const files = chainFiles(ctx, out, audits.length);
    const results = [];
    for (const [i, audit] of audits.entries()) {
      const file = files[i] as string;
      const exported = await audit.exportJsonl(file).catch((err: unknown) => {
        const e = err as NodeJS.ErrnoException;
        if (typeof e?.code === "string" && e.code.startsWith("E") && e.syscall) {
          throw new CliError(`cannot write ${file}: ${e.message}`, { cause: err });
        }
        throw err;
      });
      results.push({ file, ...exported });
    }
    if (values.json) writeJson(ctx.io.stdout, results.length === 1 ? results[0] : results);
    else
      for (const r of results)
        ctx.io.stdout.write(`exported ${r.count} entries (up to seq ${r.lastSeq}) to ${r.file}\n`);
    return EXIT.OK;
  },
};

/**
 * One file per chain: FILE for the global chain (the only one with one shard), FILE.shard<i> for
 * queue shard i's; lane n > 0 of either adds .lane<n>. The order of `ctx.audits()`.
 */
function chainFiles(
  ctx: { auditPrefixes: string[]; env: { AGENTRY_AUDIT_LANES: number } },
  out: string,
  chains: number,
): string[] {
  const lanes = ctx.env.AGENTRY_AUDIT_LANES;
  return Array.from({ length: chains }, (_, i) => {
    const chain = Math.floor(i / lanes);
    const base = ctx.auditPrefixes.length === 1 || chain === 0 ? out : `${out}.shard${chain - 1}`;
    return i % lanes === 0 ? base : `${base}.lane${i % lanes}`;
  });
}

/**
 * `agentry audit archive`: moves the audit entries out of Redis into JSONL archive files (one per
 * chain, named as `export` names them), keeping every chain verifiable. Anchors every head first
 * (an archive anchor in the anchors file), appends each chain's entries since its last archive,
 * verified, to its file, syncs it, then trims Redis through the anchored head.
 */
export const auditArchiveCommand: Command = {
  path: ["audit", "archive"],
  usage: ARCHIVE_USAGE,
  summary: "Move audit entries out of Redis into archive files (anchored first, then trimmed from Redis).",
  details:
    "Needs AGENTRY_AUDIT_KEY and a Redis user allowed to trim the audit streams (the `auditor` user of infra/redis/users.acl). " +
    "FILE grows with every run: give the same files each time (FILE.shard<i>, FILE.lane<n> for other chains, as `export` names them). " +
    "Each file verifies on its own with `agentry audit verify --file`; `agentry audit verify --anchors` checks what Redis keeps from the archived point, which an archive anchor must record.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      out: { type: "string" },
      anchors: { type: "string" },
    });
    noPositionals(positionals, ARCHIVE_USAGE);
    const out = resolve(requireFlag(values.out, "--out", ARCHIVE_USAGE));
    const anchors = resolve(requireFlag(values.anchors, "--anchors", ARCHIVE_USAGE));
    if (!ctx.env.AGENTRY_AUDIT_KEY)
      throw new CliError(
        "AGENTRY_AUDIT_KEY is not set: an archive must be anchored with an authenticated line",
      );
    const audits = await ctx.audits();
    const files = chainFiles(ctx, out, audits.length);
    const { archiveChains } = await import("@agentry/governance");
    const result = await archiveChains(audits, files, anchors).catch((err: NodeJS.ErrnoException) => {
      if (typeof err?.code === "string" && err.syscall)
        throw new CliError(`cannot use ${err.path ?? out}: ${err.message}`, { cause: err });
      if (AgentryError.isInstance(err) && err.code === "CONFLICT")
        throw new CliError(`not archived: ${err.message}`, { cause: err });
      throw err;
    });
    if (!result.ok)
      throw new CliError(`not archived: ${brokenMessage(result, chainName(ctx, result.stream))}`, { result });
    if (values.json) writeJson(ctx.io.stdout, { anchors, time: result.time, chains: result.chains });
    else
      for (const c of result.chains)
        ctx.io.stdout.write(
          `archived ${c.appended} entries of ${c.stream} (through seq ${c.lastSeq}) to ${c.file}; ${c.trimmed} trimmed from Redis\n`,
        );
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
