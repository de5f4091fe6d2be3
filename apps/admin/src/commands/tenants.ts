import { isTenantId, TENANT_ID_RULE } from "@agentry/core/base";
import type { TenantLoad, TenantSettingsPatch } from "@agentry/runtime";
import { onePositional, parseCommand } from "../args.js";
import { table } from "../format.js";
import { EXIT, usageError, writeJson, type TextSink } from "../io.js";
import { shown } from "../suggest.js";
import type { Command } from "./command.js";

const SET_USAGE = "agentry tenants set <tenant> [--max-running N|none] [--weight W] [--json]";
const SHOW_USAGE = "agentry tenants show [<tenant>] [--json]";

/** `agentry tenants set`: a tenant's fair-share settings; flags not given keep their values. */
export const tenantsSetCommand: Command = {
  path: ["tenants", "set"],
  usage: SET_USAGE,
  summary: "Cap a tenant's running tasks (--max-running) and weight its share of free slots (--weight).",
  details: [
    "--max-running N: at most N of the tenant's tasks run at once, across all workers; a task over the cap",
    "waits without holding a worker slot. `none` removes the cap. --weight W (0.01 to 1000, default 1): when",
    "several tenants have work, free slots go to them in proportion to their weights. Settings live in Redis",
    "and every worker applies them to the next task it takes; tasks a raised cap lets run are woken by the",
    "workers' reconcile (AGENTRY_RECONCILE_INTERVAL_MS, 5 s).",
    "Prints the tenant's settings and load afterwards (JSON: an array of one {tenant, maxRunning, weight, running, waiting}).",
  ].join("\n"),
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      "max-running": { type: "string" },
      weight: { type: "string" },
    });
    const tenant = tenantArg(onePositional(positionals, "<tenant>", SET_USAGE));
    if (values["max-running"] === undefined && values.weight === undefined)
      throw usageError(`give --max-running or --weight (usage: ${SET_USAGE})`);
    const patch: TenantSettingsPatch = {};
    if (values["max-running"] !== undefined) patch.maxRunning = maxRunningArg(values["max-running"]);
    if (values.weight !== undefined) patch.weight = weightArg(values.weight);
    const client = await ctx.client();
    const load = await client.setTenantSettings(tenant, patch);
    if (values.json) writeJson(ctx.io.stdout, [load]);
    else writeLoadTable(ctx.io.stdout, [load]);
    ctx.io.stderr.write(`settings for tenant ${tenant} set\n`);
    return EXIT.OK;
  },
};

/** `agentry tenants show`: settings, running and waiting tasks of one tenant or of every known one. */
export const tenantsShowCommand: Command = {
  path: ["tenants", "show"],
  usage: SHOW_USAGE,
  summary: "Show tenants' max running and weight, and how many of their tasks run and wait now.",
  details: [
    "Without <tenant>: every tenant that submitted a task or has settings. RUNNING counts tasks holding a",
    "slot (including one just handed to a task on its way to a worker); WAITING counts tasks submitted and",
    "not yet started, including those held back by MAX RUNNING. JSON: always an array of",
    "{tenant, maxRunning (null = no cap), weight, running, waiting}.",
  ].join("\n"),
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {});
    if (positionals.length > 1)
      throw usageError(`unexpected argument ${shown(positionals[1] as string)} (usage: ${SHOW_USAGE})`);
    const only = positionals[0] === undefined ? undefined : [tenantArg(positionals[0])];
    const client = await ctx.client();
    const loads = await client.tenantLoad(only);
    if (values.json) writeJson(ctx.io.stdout, loads);
    else if (loads.length === 0)
      ctx.io.stderr.write("no tenants yet: none has submitted a task or been configured\n");
    else writeLoadTable(ctx.io.stdout, loads);
    return EXIT.OK;
  },
};

function tenantArg(text: string): string {
  if (!isTenantId(text)) throw usageError(`tenant ${shown(text)} is not a tenant id: ${TENANT_ID_RULE}`);
  return text;
}

function maxRunningArg(text: string): number | null {
  const t = text.trim();
  if (t === "none") return null;
  if (!/^\d+$/.test(t) || Number(t) < 1 || !Number.isSafeInteger(Number(t))) {
    throw usageError(`--max-running must be a whole number from 1 up, or none (got ${shown(text)})`);
  }
  return Number(t);
}

function weightArg(text: string): number {
  const t = text.trim();
  const w = Number(t);
  if (!/^\d+(?:\.\d+)?$/.test(t) || !(w >= 0.01 && w <= 1000))
    throw usageError(`--weight must be a number from 0.01 to 1000 (got ${shown(text)})`);
  return w;
}

function writeLoadTable(out: TextSink, loads: readonly TenantLoad[]): void {
  out.write(
    table(
      ["TENANT", "MAX RUNNING", "WEIGHT", "RUNNING", "WAITING"],
      loads.map((l) => [
        l.tenant,
        l.maxRunning === null ? "none" : String(l.maxRunning),
        String(l.weight),
        String(l.running),
        String(l.waiting),
      ]),
    ),
  );
}
