import { describe, expect, it } from "vitest";
import { EnvironmentAliases } from "./environments.js";
import { fieldEquals, fieldIn, fieldMatches, matchPolicy } from "./match-policy.js";
import { canonicalName, canonicalText } from "./normalise.js";
import { DEFAULT_POLICY_FILE, loadPolicyFile } from "./policy-file.js";
import { rateCap } from "./rate-cap.js";
import { toolAllowList, toolDenyList } from "./tool-lists.js";
import { SafetyValidator } from "./validator.js";
import type { Action } from "./types.js";

const act = (tool: string, input: unknown, extra: Partial<Action> = {}): Action => ({
  tool,
  input,
  taskId: "t",
  tenant: "acme",
  userId: "u",
  sessionId: "s",
  ...extra,
});
const defaultPolicy = new SafetyValidator({ policies: loadPolicyFile(DEFAULT_POLICY_FILE) });
const verdictOf = async (action: Action) => {
  const r = await defaultPolicy.validate(action);
  return { type: r.verdict.type, by: r.decidedBy };
};
const DENIED = { type: "deny", by: "no-prod-delete" };
const APPROVAL = { type: "require_approval", by: "delete-needs-approval" };
const ALLOWED = { type: "allow", by: undefined };

/** Spellings of production a model can send: case, spaces, aliases, Unicode tricks. */
const PRODUCTION_SPELLINGS = [
  "production",
  "Production",
  "PRODUCTION",
  " production",
  "production\n",
  "\u00a0production\u2003", // no-break and em spaces
  "prod",
  "PROD",
  "prd",
  "live",
  "Live",
  "ｐｒｏｄｕｃｔｉｏｎ", // fullwidth
  "ＰＲＯＤ",
  "pro\u200bduction", // zero-width space
  "\u200dprod\ufeff", // zero-width joiner, BOM
  "prod\u00aduction", // soft hyphen: "prod-uction" invisibly
  "рrod", // Cyrillic р
  "prοd", // Greek ο
  "prod-eu", // a production region
  "eu_live",
];

describe("the default policy judges what an action means", () => {
  it.each(PRODUCTION_SPELLINGS)("delete_resource with env %j is denied as no-prod-delete", async (env) => {
    expect(await verdictOf(act("delete_resource", { resource: "db", env }))).toEqual(DENIED);
  });

  it.each([
    "drop_table",
    "DropTable",
    "drop-table",
    "truncate_table",
    "purge_queue",
    "wipe_disk",
    "terminate_instance",
    "destroyCluster",
    "remove_user",
    "ｄｒｏｐ_table",
    "dr\u200bop_table",
    "DELETE_RESOURCE",
    "delete.resource",
  ])("any destructive tool in production is denied: %s", async (tool) => {
    expect(await verdictOf(act(tool, { table: "t", env: "production" }))).toEqual(DENIED);
  });

  it("finds the environment wherever the input hides it", async () => {
    const hidden: unknown[] = [
      { ENV: "production" },
      { Env: "prod" },
      { ｅｎｖ: "prod" },
      { environment: "production" },
      { Environment: "LIVE" },
      { stage: "prod" },
      { targetEnv: "prod" },
      { target_environment: "prd" },
      { target: { env: "production" } },
      { targets: [{ env: "staging" }, { env: "production" }] },
      { env: ["staging", "production"] },
      { env: { name: "production" } },
      { options: { deploy: { Stage: " Live " } } },
      JSON.stringify({ table: "t", env: "production" }), // input sent as a JSON string
    ];
    for (const input of hidden) {
      expect(await verdictOf(act("drop_table", input)), JSON.stringify(input)).toEqual(DENIED);
    }
    // Outside the input: the task's env, or an env-like attribute.
    expect(await verdictOf(act("drop_table", { table: "t" }, { env: "Prod" }))).toEqual(DENIED);
    expect(
      await verdictOf(act("drop_table", { table: "t" }, { attributes: { environment: "live" } })),
    ).toEqual(DENIED);
    expect(await verdictOf(act("drop_table", { table: "t" }, { attributes: { env: "production" } }))).toEqual(
      DENIED,
    );
  });

  it("an input nested too deep to read through counts as production (fail closed)", async () => {
    let deep: unknown = { env: "staging" };
    for (let i = 0; i < 40; i++) deep = { next: deep };
    expect(await verdictOf(act("drop_table", deep))).toEqual(DENIED);
    expect(await verdictOf(act("get_weather", deep))).toEqual(ALLOWED);
  });

  it("a tool is destructive by declaration, by name or by an intent field", async () => {
    expect(await verdictOf(act("reset_cluster", { env: "production" }, { destructive: true }))).toEqual(
      DENIED,
    );
    expect(await verdictOf(act("reset_cluster", { env: "production" }))).toEqual(ALLOWED);
    // A false declaration does not make a destructive name harmless.
    expect(await verdictOf(act("drop_table", { env: "production" }, { destructive: false }))).toEqual(DENIED);
    expect(await verdictOf(act("db_admin", { operation: "DROP", env: "production" }))).toEqual(DENIED);
    expect(await verdictOf(act("http_request", { method: "Delete", url: "/x", env: "prod" }))).toEqual(
      DENIED,
    );
    expect(await verdictOf(act("records", { action: "deletion", env: "prod" }))).toEqual(DENIED);
  });

  it("other delete_resource calls need one approval, the rest is allowed", async () => {
    for (const env of ["staging", "Staging", "dev", "development", "qa"]) {
      expect(await verdictOf(act("delete_resource", { resource: "db", env })), env).toEqual(APPROVAL);
    }
    for (const tool of [
      "Delete-Resource",
      "deleteResource",
      "ｄｅｌｅｔｅ_ｒｅｓｏｕｒｃｅ",
      "delete\u200b_resource",
    ]) {
      expect(await verdictOf(act(tool, { resource: "db", env: "staging" })), tool).toEqual(APPROVAL);
    }
    expect(await verdictOf(act("drop_table", { table: "t", env: "staging" }))).toEqual(ALLOWED);
    expect(await verdictOf(act("get_weather", { city: "Paris", env: "production" }))).toEqual(ALLOWED);
    expect(await verdictOf(act("dropdown_options", { env: "production" }))).toEqual(ALLOWED);
    expect(await verdictOf(act("drop_table", { table: "t", note: "production" }))).toEqual(ALLOWED);
  });
});

describe("one normalisation for every comparison", () => {
  it("canonical text and names", () => {
    expect(new Set(PRODUCTION_SPELLINGS.slice(0, 6).map(canonicalText))).toEqual(new Set(["production"]));
    expect(canonicalText("ＰＲＯＤ")).toBe("prod");
    expect(canonicalText("Straße")).toBe("strasse");
    expect(
      new Set(
        [
          "delete_resource",
          "deleteResource",
          "Delete-Resource",
          "DELETE RESOURCE",
          " delete.resource ",
          "ｄｅｌｅｔｅ\u200b_resource",
          "dеlete_resource",
        ].map(canonicalName),
      ),
    ).toEqual(new Set(["delete_resource"]));
  });

  it("rule tool names, field keys and string values compare canonically", async () => {
    const deny = { type: "deny" as const, reason: "no" };
    const p = matchPolicy({
      name: "m",
      tool: "pay_invoice",
      conditions: [fieldEquals("to.country", "XX")],
      then: deny,
    });
    expect(await p.evaluate(act("PayInvoice", { To: { COUNTRY: " xx" } }), { now: 0 })).toEqual(deny);
    const q = matchPolicy({
      name: "q",
      tool: ["shell"],
      conditions: [fieldIn("env", ["production"]), fieldMatches("cmd", /^rm\b/)],
      then: deny,
    });
    expect(await q.evaluate(act("Shell", { env: "LIVE", cmd: "ｒｍ -rf /" }), { now: 0 })).toEqual(deny);
    expect(await q.evaluate(act("Shell", { env: "staging", cmd: "rm -rf /" }), { now: 0 })).toEqual({
      type: "allow",
    });
  });

  it("tool lists and rate caps match every spelling of a name", async () => {
    const ctx = { now: 0 };
    expect((await toolDenyList({ tools: ["shell_exec"] }).evaluate(act("Shell-Exec", {}), ctx)).type).toBe(
      "deny",
    );
    expect(
      (await toolDenyList({ tools: ["shell_exec"] }).evaluate(act("ｓｈｅｌｌ\u200b_exec", {}), ctx)).type,
    ).toBe("deny");
    expect((await toolAllowList({ tools: ["get_weather"] }).evaluate(act("getWeather", {}), ctx)).type).toBe(
      "allow",
    );
    // No Redis in the context: a cap that applies throws (deny), one that does not apply allows.
    const cap = new SafetyValidator({
      policies: [rateCap({ tool: "send_email", max: 1, per: "task", windowMs: 1000 })],
    });
    expect((await cap.validate(act("SendEmail", {}))).verdict.type).toBe("deny");
    expect((await cap.validate(act("get_weather", {}))).verdict.type).toBe("allow");
  });

  it("environment aliases: built-in, extended, never contradictory", () => {
    expect(EnvironmentAliases.default.resolve(" PRD ")).toBe("production");
    const extended = new EnvironmentAliases({ production: ["prod-eu", "main"], qa: ["test"] });
    expect(extended.resolve("Main")).toBe("production");
    expect(extended.resolve("prod")).toBe("production");
    expect(extended.resolve("TEST")).toBe("qa");
    expect(() => new EnvironmentAliases({ staging: ["live"] })).toThrow(
      /"live" would mean both "production" and "staging"/,
    );
  });
});
