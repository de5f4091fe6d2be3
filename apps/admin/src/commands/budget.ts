import type { BudgetLimit, BudgetPeriod, BudgetScope, BudgetStats } from "@agentry/runtime";
import { noPositionals, parseCommand, requireFlag } from "../args.js";
import { formatUsd, parseCount, parseUsdToMicro, table } from "../format.js";
import { EXIT, usageError, writeJson, type TextSink } from "../io.js";
import type { Command } from "./command.js";

const SCOPES = "global|tenant:<t>|tenant:<t>:user:<u>|tenant:<t>:session:<s>";
const SET_USAGE = `agentry budget set --scope ${SCOPES} [--max-tokens N] [--max-cost USD] [--period none|day|month] [--json]`;
const SHOW_USAGE = `agentry budget show [--scope ${SCOPES}] [--json]`;

const PERIODS: readonly BudgetPeriod[] = ["none", "day", "month"];

/** `agentry budget set`: set a scope's limit; flags not given keep the scope's current values. */
export const budgetSetCommand: Command = {
  path: ["budget", "set"],
  usage: SET_USAGE,
  summary:
    "Set a budget limit in tokens and/or US dollars (stored as integer micro-USD), optionally per day or month.",
  details: [
    "--max-cost takes dollars as decimal text (0.25 → 250000 micro-USD, exactly). Flags not given keep the",
    "scope's current values; a new limit's period defaults to none. Prints the scope's figures afterwards.",
  ].join("\n"),
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      scope: { type: "string" },
      "max-tokens": { type: "string" },
      "max-cost": { type: "string" },
      period: { type: "string" },
    });
    noPositionals(positionals, SET_USAGE);
    const scope = await scopeArg(requireFlag(values.scope, "--scope", SET_USAGE));
    if (
      values["max-tokens"] === undefined &&
      values["max-cost"] === undefined &&
      values.period === undefined
    ) {
      throw usageError(`give --max-tokens, --max-cost or --period (usage: ${SET_USAGE})`);
    }
    if (values.period !== undefined && !PERIODS.includes(values.period as BudgetPeriod)) {
      throw usageError(`--period must be one of ${PERIODS.join(", ")} (got "${values.period}")`);
    }
    const maxTokens =
      values["max-tokens"] === undefined ? undefined : parseCount(values["max-tokens"], "--max-tokens");
    const maxCost = values["max-cost"] === undefined ? undefined : parseUsdToMicro(values["max-cost"]);

    const ledger = await ctx.ledger();
    const current = await ledger.getLimit(scope);
    const limit: BudgetLimit = {
      period: (values.period as BudgetPeriod | undefined) ?? current?.period ?? "none",
      ...((maxTokens ?? current?.maxTokens) === undefined
        ? {}
        : { maxTokens: maxTokens ?? current?.maxTokens }),
      ...((maxCost ?? current?.maxCostMicroUsd) === undefined
        ? {}
        : { maxCostMicroUsd: maxCost ?? current?.maxCostMicroUsd }),
    };
    if (limit.maxTokens === undefined && limit.maxCostMicroUsd === undefined) {
      throw usageError(`${scope} has no limit yet: give --max-tokens or --max-cost`);
    }
    await ledger.setLimit(scope, limit);
    const stats = await ledger.getStats(scope);
    if (values.json) writeJson(ctx.io.stdout, stats);
    else writeStatsTable(ctx.io.stdout, [stats]);
    ctx.io.stderr.write(`budget for ${scope} set\n`);
    return EXIT.OK;
  },
};

/** `agentry budget show`: limits and figures of one scope, or of every known scope. */
export const budgetShowCommand: Command = {
  path: ["budget", "show"],
  usage: SHOW_USAGE,
  summary: "Show budget limits, used, reserved and remaining (every scope unless --scope).",
  details:
    "JSON: always an array of stats, costs in integer micro-USD; the table shows dollars with 6 decimals.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, { scope: { type: "string" } });
    noPositionals(positionals, SHOW_USAGE);
    const only = values.scope === undefined ? undefined : await scopeArg(values.scope);
    const ledger = await ctx.ledger();
    const scopes = only ? [only] : await ledger.listScopes();
    const stats = await Promise.all(scopes.map((s) => ledger.getStats(s)));
    if (values.json) writeJson(ctx.io.stdout, stats);
    else if (stats.length === 0) ctx.io.stderr.write("no budgets set and no usage recorded\n");
    else writeStatsTable(ctx.io.stdout, stats);
    return EXIT.OK;
  },
};

async function scopeArg(text: string): Promise<BudgetScope> {
  const { isBudgetScope, scopeSyntaxHelp } = await import("@agentry/runtime");
  if (isBudgetScope(text)) return text;
  // Users and sessions are a tenant's: the old user:<u> / session:<s> forms are refused, naming the new form.
  throw usageError(`--scope: ${scopeSyntaxHelp(text)}`);
}

function writeStatsTable(out: TextSink, stats: BudgetStats[]): void {
  const tokens = (n: number | null | undefined) => (n === null || n === undefined ? "-" : String(n));
  const usd = (n: number | null | undefined) => (n === null || n === undefined ? "-" : formatUsd(n));
  out.write(
    table(
      [
        "SCOPE",
        "PERIOD",
        "MAX TOKENS",
        "USED",
        "RESERVED",
        "REMAINING",
        "MAX COST",
        "USED",
        "RESERVED",
        "REMAINING",
      ],
      stats.map((s) => [
        s.scope,
        s.limit ? (s.limit.period === "none" ? "none" : `${s.limit.period} (${s.period})`) : "no limit",
        tokens(s.limit?.maxTokens),
        tokens(s.used.tokens),
        tokens(s.reserved.tokens),
        tokens(s.remaining.tokens),
        usd(s.limit?.maxCostMicroUsd),
        usd(s.used.costMicroUsd),
        usd(s.reserved.costMicroUsd),
        usd(s.remaining.costMicroUsd),
      ]),
    ),
  );
}
