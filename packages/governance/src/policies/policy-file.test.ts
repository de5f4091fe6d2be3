import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import { DEFAULT_POLICY_FILE, loadPolicyFile, parsePolicyFile } from "./policy-file.js";
import { SafetyValidator } from "./validator.js";
import type { Action } from "./types.js";

const act = (tool: string, input: unknown): Action => ({
  tool,
  input,
  taskId: "t",
  tenant: "a",
  userId: "u",
  sessionId: "s",
});

function configError(fn: () => unknown): AgentryError {
  try {
    fn();
  } catch (err) {
    if (AgentryError.isInstance(err) && err.code === "INVALID_CONFIG") return err;
    throw err;
  }
  throw new Error("expected INVALID_CONFIG");
}

describe("default policy file", () => {
  const validator = new SafetyValidator({ policies: loadPolicyFile(DEFAULT_POLICY_FILE) });
  it("denies production deletes as no-prod-delete", async () => {
    const r = await validator.validate(act("delete_resource", { resource: "db", env: "production" }));
    expect(r).toMatchObject({
      verdict: { type: "deny", reason: "Production deletes are forbidden" },
      decidedBy: "no-prod-delete",
    });
  });
  it("requires one approval from every enrolled approver for other deletes", async () => {
    const r = await validator.validate(act("delete_resource", { resource: "db", env: "staging" }));
    expect(r.verdict).toEqual({
      type: "require_approval",
      approvers: ["*"],
      quorum: 1,
      ttlMs: 3_600_000,
      reason: "Deleting a resource needs a human approval",
    });
  });
  it("allows the rest", async () => {
    expect((await validator.validate(act("get_weather", { city: "Paris" }))).verdict).toEqual({
      type: "allow",
    });
  });
  it("reads the same as JSON", async () => {
    const json = JSON.stringify({
      version: 1,
      policies: [
        {
          name: "no-rm",
          when: { tool: ["rm", "rmdir"], input: { "path.root": { in: ["/", "/etc"] } } },
          then: "deny",
        },
      ],
    });
    const v = new SafetyValidator({ policies: parsePolicyFile(json) });
    expect((await v.validate(act("rm", { path: { root: "/etc" } }))).verdict).toEqual({
      type: "deny",
      reason: "denied by no-rm",
    });
    expect(readFileSync(DEFAULT_POLICY_FILE, "utf8")).toContain("no-prod-delete");
  });
  it("builds the other built-ins", async () => {
    const policies = parsePolicyFile(
      [
        "version: 1",
        "policies:",
        "  - kind: tool-deny-list",
        "    tools: [shell]",
        "  - kind: no-production-delete",
        "  - kind: rate-cap",
        "    tool: send_email",
        "    max: 2",
        "    per: tenant",
        "    window: 1h",
      ].join("\n"),
    );
    expect(policies.map((p) => p.name)).toEqual([
      "tool-deny-list",
      "no-prod-delete",
      "rate-cap:send_email:tenant",
    ]);
  });
});

describe("policy file errors", () => {
  it("names the file, line and path of a schema error", () => {
    const text = [
      "version: 1",
      "policies:",
      "  - name: a",
      "    when: { tool: x }",
      "    then: require_approval",
      "    quorum: 0",
    ].join("\n");
    const err = configError(() => parsePolicyFile(text, { file: "p.yaml" }));
    expect(err.message).toMatch(/^p\.yaml:6:\d+: policies\[0\]\.quorum: /);
    expect(err.details).toMatchObject({ file: "p.yaml", line: 6, path: "policies[0].quorum" });
  });
  it("reports an unknown verdict and an unknown key", () => {
    const bad = ["version: 1", "policies:", "  - name: a", "    when: {}", "    then: explode"].join("\n");
    expect(configError(() => parsePolicyFile(bad, { file: "f" })).message).toMatch(
      /^f:5:\d+: policies\[0\]\.then: /,
    );
    const extra = [
      "version: 1",
      "policies:",
      "  - name: a",
      "    when: {}",
      "    then: deny",
      "    colour: red",
    ].join("\n");
    expect(configError(() => parsePolicyFile(extra, { file: "f" })).message).toMatch(
      /^f:3:\d+: policies\[0\]: .*colour/,
    );
  });
  it("reports a bad regex and a bad duration", () => {
    const re = [
      "version: 1",
      "policies:",
      "  - name: a",
      "    when:",
      "      tool: { matches: '(' }",
      "    then: deny",
    ].join("\n");
    expect(configError(() => parsePolicyFile(re, { file: "f" })).message).toMatch(
      /^f:5:\d+: policies\[0\]\.when\.tool\.matches: bad regular expression/,
    );
    const ttl = ["version: 1", "defaults:", "  ttl: soon", "policies: []"].join("\n");
    expect(configError(() => parsePolicyFile(ttl, { file: "f" })).message).toMatch(
      /^f:3:\d+: defaults\.ttl: bad duration "soon"/,
    );
  });
  it("reports YAML syntax errors with their line", () => {
    const err = configError(() =>
      parsePolicyFile("version: 1\npolicies:\n  - name: [unclosed\n", { file: "s.yaml" }),
    );
    expect(err.message).toMatch(/^s\.yaml:\d+:\d+: /);
    expect(err.details?.line).toBeGreaterThanOrEqual(3);
  });
  it("reports duplicate names, a missing version and an unreadable file", () => {
    const dup = [
      "version: 1",
      "policies:",
      "  - kind: no-production-delete",
      "  - kind: no-production-delete",
    ].join("\n");
    expect(configError(() => parsePolicyFile(dup, { file: "f" })).message).toMatch(
      /^f:4:\d+: policies\[1\]: duplicate policy name "no-prod-delete"/,
    );
    expect(configError(() => parsePolicyFile("policies: []", { file: "f" })).message).toMatch(
      /^f:1:1: version: /,
    );
    expect(configError(() => loadPolicyFile("/nonexistent/policy.yaml")).message).toMatch(
      /^\/nonexistent\/policy\.yaml: cannot read/,
    );
  });
});

describe("policy file: defaults.verdict and environments", () => {
  it("refuses an empty policy list without an explicit default verdict, naming the file", () => {
    const err = configError(() =>
      parsePolicyFile("version: 1\npolicies: []\n", { file: "/etc/agentry/policy.yaml" }),
    );
    expect(err.message).toMatch(
      /^\/etc\/agentry\/policy\.yaml:2:\d+: policies: the policy list is empty, which would allow every action/,
    );
    expect(err.details).toMatchObject({ file: "/etc/agentry/policy.yaml", line: 2, path: "policies" });
    const json = configError(() => parsePolicyFile('{"version": 1, "policies": []}', { file: "p.json" }));
    expect(json.message).toMatch(/^p\.json:1:\d+: policies: the policy list is empty/);
    // Defaults for approvals are not a verdict.
    expect(() =>
      parsePolicyFile("version: 1\ndefaults: { quorum: 2 }\npolicies: []\n", { file: "f" }),
    ).toThrow(/policy list is empty/);
  });

  it("an explicit defaults.verdict says what an empty list means", async () => {
    const allowAll = new SafetyValidator({
      policies: parsePolicyFile("version: 1\ndefaults: { verdict: allow }\npolicies: []\n"),
    });
    expect((await allowAll.validate(act("drop_table", { env: "staging" }))).verdict).toEqual({
      type: "allow",
    });
    const denyAll = new SafetyValidator({
      policies: parsePolicyFile("version: 1\ndefaults: { verdict: deny }\npolicies: []\n"),
    });
    expect(await denyAll.validate(act("get_weather", { city: "Oslo" }))).toMatchObject({
      verdict: { type: "deny", reason: "no policy allows tool get_weather (defaults.verdict: deny)" },
      decidedBy: "default-deny",
    });
  });

  it("defaults.verdict: deny with then: allow rules is an allow list by meaning; deny rules still win", async () => {
    const text = [
      "version: 1",
      "defaults: { verdict: deny }",
      "policies:",
      "  - name: reads",
      "    when: { tool: [get_weather, recall] }",
      "    then: allow",
      "  - name: staging-deletes",
      "    when: { tool: delete_resource, env: staging }",
      "    then: allow",
      "  - name: no-paris",
      "    when: { tool: get_weather, input: { city: paris } }",
      "    then: deny",
    ].join("\n");
    const v = new SafetyValidator({ policies: parsePolicyFile(text) });
    expect((await v.validate(act("GetWeather", { city: "Oslo" }))).verdict.type).toBe("allow");
    expect(await v.validate(act("get_weather", { city: " PARIS" }))).toMatchObject({
      verdict: { type: "deny" },
      decidedBy: "no-paris",
    });
    expect((await v.validate(act("delete_resource", { env: "Stage" }))).verdict.type).toBe("allow");
    expect(await v.validate(act("delete_resource", { env: "prod" }))).toMatchObject({
      decidedBy: "default-deny",
    });
    expect(await v.validate(act("shell", {}))).toMatchObject({ decidedBy: "default-deny" });
  });

  it("refuses then: allow without defaults.verdict: deny, and the reserved name", () => {
    const allow = ["version: 1", "policies:", "  - name: a", "    when: { tool: x }", "    then: allow"].join(
      "\n",
    );
    expect(configError(() => parsePolicyFile(allow, { file: "f" })).message).toMatch(
      /^f:5:\d+: policies\[0\]\.then: then: allow only applies with defaults\.verdict: deny/,
    );
    const taken = [
      "version: 1",
      "defaults: { verdict: deny }",
      "policies:",
      "  - name: default-deny",
      "    when: { tool: x }",
      "    then: deny",
    ].join("\n");
    expect(configError(() => parsePolicyFile(taken, { file: "f" })).message).toMatch(
      /^f:4:\d+: policies\[0\]: the policy name "default-deny" is taken/,
    );
  });

  it("environments adds aliases for every comparison in the file, and refuses contradictions", async () => {
    const text = [
      "version: 1",
      "environments:",
      "  production: [main, prod-eu]",
      "policies:",
      "  - kind: no-production-delete",
      "  - name: prod-writes",
      "    when: { tool: write_file, input: { target.env: production } }",
      "    then: require_approval",
      "  - name: prod-anything",
      "    when: { env: production, destructive: false }",
      "    then: require_approval",
    ].join("\n");
    const v = new SafetyValidator({ policies: parsePolicyFile(text) });
    expect(await v.validate(act("drop_table", { env: "MAIN" }))).toMatchObject({
      verdict: { type: "deny" },
      decidedBy: "no-prod-delete",
    });
    expect(await v.validate(act("drop_table", { env: "prd" }))).toMatchObject({
      decidedBy: "no-prod-delete",
    });
    expect((await v.validate(act("write_file", { target: { ENV: "main" } }))).verdict.type).toBe(
      "require_approval",
    );
    expect((await v.validate(act("get_weather", { stage: "main" }))).verdict.type).toBe("require_approval");
    expect((await v.validate(act("get_weather", { stage: "staging" }))).verdict.type).toBe("allow");

    const clash = [
      "version: 1",
      "environments:",
      "  staging: [live]",
      "policies:",
      "  - kind: no-production-delete",
    ].join("\n");
    expect(configError(() => parsePolicyFile(clash, { file: "f" })).message).toMatch(
      /^f:3:\d+: environments: Environment alias "live" would mean both "production" and "staging"/,
    );
  });

  it("the default policy file says its verdict explicitly", () => {
    expect(readFileSync(DEFAULT_POLICY_FILE, "utf8")).toMatch(/^\s+verdict: allow/m);
  });
});
