import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { COMMANDS } from "./run-cli.js";
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
    const none = await runAgentry([], {});
    expect(none.code).toBe(2);
    expect(none.stdout).toBe("");
    expect(none.stderr).toMatch(/^Usage: agentry <command>/);
    const helpTopic = await runAgentry(["help", "budget", "set"], {});
    expect(helpTopic.stdout).toMatch(/^Usage: agentry budget set --scope/);
    const sub = await runAgentry(["approvals", "reject", "--help"], {});
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/^Usage: agentry approvals reject <approvalId> --as <approver> --reason TEXT/);
  });

  it("fails with exit 2 and one line for unknown commands and flags", async () => {
    for (const args of [["frobnicate"], ["approvals"], ["approvals", "approve-all"], ["budget", "show", "--colour"], ["status"], ["status", "a", "b"]]) {
      const run = await runAgentry(args, unreachable);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stdout, args.join(" ")).toBe("");
      expect(run.stderr, args.join(" ")).toMatch(/^agentry: [^\n]+\n$/);
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
      expect(run.stderr, args.join(" ")).toMatch(/(^|\n)agentry: Redis is unreachable at redis:\/\/127\.0\.0\.1:1\n$/);
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
      spawnSync(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", "apps/admin/src/cli.ts", ...args], {
        cwd: root,
        env: { PATH: process.env.PATH, HOME: home, REDIS_URL: "redis://127.0.0.1:1" },
        encoding: "utf8",
        timeout: 30_000,
      });
    const keys = run(["keys", "generate", "alice"]);
    expect(keys.status).toBe(0);
    expect(keys.stdout).toMatch(/^alice: \S+\n$/);
    expect(readFileSync(join(home, ".agentry", "keys", "alice.key"), "utf8")).toContain("PRIVATE KEY");
    const deny = run(["policy", "check", "--tool", "delete_resource", "--input", '{"env":"production"}']);
    expect(deny.status).toBe(3);
    const down = run(["status", "task_1"]);
    expect(down.status).toBe(1);
    expect(down.stderr).toBe("agentry: Redis is unreachable at redis://127.0.0.1:1\n");
  });
});
