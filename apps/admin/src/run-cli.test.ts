import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { COMMANDS, EXIT, GROUPS } from "./run-cli.js";
import { runAgentry, tempDir } from "./testing/run-agentry.js";

const unreachable = { REDIS_URL: "redis://127.0.0.1:1", AGENTRY_PREFIX: "agentry-unreachable" };
const dir = tempDir("cli");
afterAll(() => dir.remove());

describe("agentry command line", () => {
  it("lists every command of the contract in --help", async () => {
    const run = await runAgentry(["--help"], {});
    expect(run.code).toBe(0);
    for (const c of [
      "submit",
      "status",
      "approvals list",
      "approvals approve",
      "approvals reject",
      "keys generate",
      "budget set",
      "budget show",
      "audit tail",
      "audit verify",
      "policy check",
    ]) {
      expect(run.stdout).toContain(`  ${c} `);
    }
    // Bare `agentry` is a request for help, as for gh and kubectl: stdout, exit 0.
    const none = await runAgentry([], {});
    expect(none.code).toBe(0);
    expect(none.stderr).toBe("");
    expect(none.stdout).toBe(run.stdout);
    const helpTopic = await runAgentry(["help", "budget", "set"], {});
    expect(helpTopic.stdout).toMatch(/^Usage: agentry budget set --scope/);
    const sub = await runAgentry(["approvals", "reject", "--help"], {});
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/^Usage: agentry approvals reject <approvalId> --as <approver> --reason TEXT/);
  });

  it("fails with exit 2 and one line for unknown commands and flags", async () => {
    for (const args of [
      ["frobnicate"],
      ["approvals", "approve-all"],
      ["approvals", "--all"],
      ["budget", "show", "--colour"],
      ["status"],
      ["status", "a", "b"],
      ["help", "nope"],
      ["version", "2"],
    ]) {
      const run = await runAgentry(args, unreachable);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stdout, args.join(" ")).toBe("");
      expect(run.stderr, args.join(" ")).toMatch(/^agentry: [^\n]+\n$/);
    }
  });

  it("prints every group's commands for `agentry <group>`, `<group> --help`, `<group> -h` and `help <group>`", async () => {
    const groups = [...new Set(COMMANDS.filter((c) => c.path.length > 1).map((c) => c.path[0] as string))];
    expect(groups.sort()).toEqual(Object.keys(GROUPS).sort());
    expect(groups).toEqual(expect.arrayContaining(["approvals", "budget", "audit", "policy", "keys"]));
    for (const group of groups) {
      const subs = COMMANDS.filter((c) => c.path[0] === group).map((c) => c.path[1] as string);
      const outputs = new Set<string>();
      for (const args of [
        [group],
        [group, "--help"],
        [group, "-h"],
        ["help", group],
        [group, "--help", "--json"],
      ]) {
        const run = await runAgentry(args, unreachable);
        expect(run.code, args.join(" ")).toBe(0);
        expect(run.stderr, args.join(" ")).toBe("");
        expect(run.stdout).toMatch(new RegExp(`^Usage: agentry ${group} <command> \\[options\\]\n`));
        for (const sub of subs) expect(run.stdout).toMatch(new RegExp(`\n  ${sub} +\\S`));
        outputs.add(run.stdout);
      }
      expect(outputs.size, group).toBe(1);
    }
  });

  it("prints every command's usage for `<command> --help`, on stdout with exit 0 and without connecting", async () => {
    for (const c of COMMANDS) {
      for (const flag of ["--help", "-h"]) {
        const run = await runAgentry([...c.path, flag], unreachable);
        expect(run.code, c.path.join(" ")).toBe(0);
        expect(run.stderr).toBe("");
        expect(run.stdout.startsWith(`Usage: ${c.usage}\n`)).toBe(true);
      }
    }
  });

  it("prints the version of apps/admin/package.json for --version, version and version --json", async () => {
    const { version } = JSON.parse(
      readFileSync(fileURLToPath(new URL("../package.json", import.meta.url)), "utf8"),
    ) as { version: string };
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    for (const args of [["--version"], ["version"]]) {
      const run = await runAgentry(args, unreachable);
      expect(run).toEqual({ code: 0, stdout: `agentry ${version}\n`, stderr: "" });
    }
    const json = await runAgentry(["version", "--json"], unreachable);
    expect(JSON.parse(json.stdout)).toEqual({ version });
  });

  it("suggests the closest command or flag on a typo: exit 2, one line on stderr, nothing on stdout", async () => {
    const cases: [string[], string | undefined][] = [
      [["stauts", "task_1"], '"status"'],
      [["Submit", "hi"], '"submit"'],
      [["aprovals", "list"], '"approvals"'],
      [["approvals", "aprove", "apr_1"], '"approvals approve"'],
      [["approvals", "lsit"], '"approvals list"'],
      [["audti", "verify"], '"audit"'],
      [["verify"], '"audit verify"'],
      [["--verison"], '"--version"'],
      [["--hlep"], '"--help"'],
      [["submit", "hi", "--wait", "--timout", "3"], '"--timeout"'],
      [["submit", "hi", "--idempotency=k"], '"--idempotency-key"'],
      [["budget", "show", "--Scope", "global"], '"--scope"'],
      [["audit", "tail", "--jsno"], '"--json"'],
      [["frobnicate"], undefined],
      [["budget", "show", "--colour"], undefined],
    ];
    for (const [args, suggestion] of cases) {
      const run = await runAgentry(args, unreachable);
      const what = args.join(" ");
      expect(run.code, what).toBe(2);
      expect(run.stdout, what).toBe("");
      expect(run.stderr, what).toMatch(/^agentry: [^\n]+\n$/);
      if (suggestion) expect(run.stderr, what).toContain(`did you mean ${suggestion}?`);
      else expect(run.stderr, what).not.toContain("did you mean");
    }
  });

  it("escapes control characters of what it echoes, so a typed word cannot drive the terminal", async () => {
    for (const args of [
      ["stat\u001b[2Jus"],
      ["approvals", "\u009b31m"],
      ["budget", "show", "--\u202eepocs"],
      ["status", "a", "\u0007b"],
    ]) {
      const run = await runAgentry(args, unreachable);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/^agentry: [^\n]+\n$/);
      // eslint-disable-next-line no-control-regex -- the test looks for the raw characters
      expect(run.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/);
      expect(run.stderr).toMatch(/\\u\{(1b|9b|202e|7)\}/);
    }
  });

  it("documents every exit code, each distinct, in --help and in the admin README", async () => {
    const codes = Object.values(EXIT);
    expect(new Set(codes).size).toBe(codes.length);
    const help = (await runAgentry(["--help"], {})).stdout;
    const readme = readFileSync(fileURLToPath(new URL("../README.md", import.meta.url)), "utf8");
    for (const code of codes) {
      expect(help).toMatch(new RegExp(`(^|[ ,(])${code} `, "m"));
      expect(readme).toMatch(new RegExp(`\\n\\| ${code} +\\|`));
    }
  });

  it("reports an unreachable Redis in one line, for every command that needs Redis", async () => {
    const needRedis: string[][] = [
      ["submit", "hello"],
      ["submit", "hello", "--wait", "--json"],
      ["status", "task_1"],
      ["cancel", "task_1"],
      ["approvals", "list"],
      ["approvals", "show", "apr_1"],
      ["approvals", "approve", "apr_1", "--as", "alice"],
      ["budget", "set", "--scope", "global", "--max-tokens", "10"],
      ["budget", "show", "--json"],
      ["audit", "tail"],
      ["audit", "verify"],
      ["audit", "export", "--out", join(dir.path, "x.jsonl")],
    ];
    for (const args of needRedis) {
      const run = await runAgentry(args, unreachable);
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stdout, args.join(" ")).toBe("");
      expect(run.stderr, args.join(" ")).toMatch(
        /(^|\n)agentry: Redis is unreachable at redis:\/\/127\.0\.0\.1:1\n$/,
      );
      expect(run.stderr.split("\n").filter((l) => l.startsWith("agentry:"))).toHaveLength(1);
    }
  });

  it("never shows a Redis password", async () => {
    const run = await runAgentry(["budget", "show"], { REDIS_URL: "redis://:s3cret@127.0.0.1:1" });
    expect(run.stderr).toBe("agentry: Redis is unreachable at redis://:***@127.0.0.1:1\n");
  });

  it("reports an invalid environment in one line", async () => {
    const run = await runAgentry(["budget", "show"], { REDIS_URL: "not a url" });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^agentry: Invalid environment: REDIS_URL[^\n]*\n$/);
  });

  it("has a help line and usage for every command", () => {
    for (const c of COMMANDS) {
      expect(c.usage.startsWith(`agentry ${c.path.join(" ")}`)).toBe(true);
      expect(c.summary.length).toBeGreaterThan(0);
    }
  });

  it("runs as a process through the entry point, with exit codes", () => {
    const root = fileURLToPath(new URL("../../../", import.meta.url));
    const home = join(dir.path, "home");
    const run = (args: string[]) =>
      spawnSync(
        process.execPath,
        ["--conditions=@agentry/source", "--import", "tsx", "apps/admin/src/cli.ts", ...args],
        {
          cwd: root,
          env: { PATH: process.env.PATH, HOME: home, REDIS_URL: "redis://127.0.0.1:1" },
          encoding: "utf8",
          timeout: 30_000,
        },
      );
    const keys = run(["keys", "generate", "alice"]);
    expect(keys.status).toBe(0);
    expect(keys.stdout).toMatch(/^alice: \S+\n$/);
    expect(readFileSync(join(home, ".agentry", "keys", "alice.key"), "utf8")).toContain("PRIVATE KEY");
    const deny = run(["policy", "check", "--tool", "delete_resource", "--input", '{"env":"production"}']);
    expect(deny.status).toBe(3);
    const down = run(["status", "task_1"]);
    expect(down.status).toBe(1);
    expect(down.stderr).toBe("agentry: Redis is unreachable at redis://127.0.0.1:1\n");
    const version = run(["--version"]);
    expect(version.status).toBe(0);
    expect(version.stdout).toMatch(/^agentry \d+\.\d+\.\d+\S*\n$/);
    const group = run(["approvals", "--help"]);
    expect(group.status).toBe(0);
    expect(group.stdout).toMatch(/^Usage: agentry approvals <command>/);
    const typo = run(["aprovals", "list"]);
    expect(typo.status).toBe(2);
    expect(typo.stdout).toBe("");
    expect(typo.stderr).toBe(
      'agentry: unknown command "aprovals"; did you mean "approvals"? (run agentry --help)\n',
    );
  });
});
