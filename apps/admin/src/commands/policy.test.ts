import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runAgentry, tempDir } from "../testing/run-agentry.js";

// Policy checks run offline: no Redis, and an unreachable REDIS_URL proves it.
const env = { REDIS_URL: "redis://127.0.0.1:1" };
const dir = tempDir("policy");
afterAll(() => dir.remove());

describe("agentry policy check (default policy)", () => {
  it("denies a production delete, naming no-prod-delete (exit 3)", async () => {
    const run = await runAgentry(
      ["policy", "check", "--tool", "delete_resource", "--input", '{"resource":"db-7","env":"production"}'],
      env,
    );
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(
      /^verdict\s+deny\nreason\s+Production deletes are forbidden\ndecided by\s+no-prod-delete\n/,
    );
    const json = await runAgentry(
      [
        "policy",
        "check",
        "--tool",
        "delete_resource",
        "--input",
        '{"resource":"db-7","env":"production"}',
        "--json",
      ],
      env,
    );
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({
      verdict: { type: "deny", reason: "Production deletes are forbidden" },
      decidedBy: "no-prod-delete",
    });
  });

  it("denies any destructive tool in production, in any spelling (exit 3)", async () => {
    const run = await runAgentry(
      ["policy", "check", "--tool", "drop_table", "--input", '{"table":"t","env":"production"}'],
      env,
    );
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(
      /^verdict\s+deny\nreason\s+Production deletes are forbidden\ndecided by\s+no-prod-delete\n/,
    );
    const spelt = await runAgentry(
      [
        "policy",
        "check",
        "--tool",
        "Delete-Resource",
        "--input",
        '{"resource":"db-7","Environment":" PROD"}',
        "--json",
      ],
      env,
    );
    expect(spelt.code).toBe(3);
    expect(JSON.parse(spelt.stdout)).toMatchObject({ decidedBy: "no-prod-delete" });
    // A name that says nothing: the registry's declaration decides, given here by --destructive.
    const reset = [
      "policy",
      "check",
      "--tool",
      "reset_cluster",
      "--input",
      '{"cluster":"c1"}',
      "--env",
      "live",
    ];
    expect((await runAgentry(reset, env)).code).toBe(0);
    expect((await runAgentry([...reset, "--destructive"], env)).code).toBe(3);
  });

  it("requires one approval for a staging delete (exit 4)", async () => {
    const run = await runAgentry(
      [
        "policy",
        "check",
        "--tool",
        "delete_resource",
        "--input",
        '{"resource":"db-7","env":"staging"}',
        "--json",
      ],
      env,
    );
    expect(run.code).toBe(4);
    expect(JSON.parse(run.stdout)).toMatchObject({
      verdict: { type: "require_approval", approvers: ["*"], quorum: 1, ttlMs: 3_600_000 },
      decidedBy: "delete-needs-approval",
    });
    const human = await runAgentry(
      ["policy", "check", "--tool", "delete_resource", "--input", '{"resource":"db-7","env":"staging"}'],
      env,
    );
    expect(human.stdout).toMatch(/approvers\s+\*\nquorum\s+1\nttl\s+1h\n/);
  });

  it("allows get_weather (exit 0), with the input read from stdin", async () => {
    const run = await runAgentry(
      ["policy", "check", "--tool", "get_weather", "--input", "-", "--json"],
      env,
      { stdin: '{"city":"Oslo"}' },
    );
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({
      verdict: { type: "allow" },
      decidedBy: null,
      action: { input: { city: "Oslo" } },
    });
  });

  it("refuses invalid JSON input with exit 2 and one line", async () => {
    const run = await runAgentry(
      ["policy", "check", "--tool", "get_weather", "--input", "{city: Oslo}"],
      env,
    );
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/^agentry: --input is not valid JSON: [^\n]*\n$/);
  });
});

describe("agentry policy check (AGENTRY_POLICY_FILE)", () => {
  it("uses the configured file, and names the line of an invalid one", async () => {
    const file = join(dir.path, "policy.yaml");
    writeFileSync(
      file,
      "version: 1\npolicies:\n  - name: no-weather\n    when: { tool: get_weather }\n    then: deny\n",
    );
    const run = await runAgentry(["policy", "check", "--tool", "get_weather", "--input", "{}"], {
      ...env,
      AGENTRY_POLICY_FILE: file,
    });
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(/decided by\s+no-weather/);

    writeFileSync(
      file,
      "version: 1\npolicies:\n  - name: x\n    when: { tool: get_weather }\n    then: maybe\n",
    );
    const bad = await runAgentry(["policy", "check", "--tool", "get_weather", "--input", "{}"], {
      ...env,
      AGENTRY_POLICY_FILE: file,
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`^agentry: ${file}:5:\\d+: [^\\n]*\\n$`));
  });

  it("refuses an empty policy list without defaults.verdict, naming the file (exit 1)", async () => {
    const file = join(dir.path, "empty.yaml");
    writeFileSync(file, "version: 1\npolicies: []\n");
    const run = await runAgentry(["policy", "check", "--tool", "drop_table", "--input", "{}"], {
      ...env,
      AGENTRY_POLICY_FILE: file,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^agentry: ${file}:2:\\d+: policies: the policy list is empty`));
  });
});
