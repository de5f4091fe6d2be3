#!/usr/bin/env node
/**
 * The `agentry` command. All logic lives in {@link runCli}; this file only binds it to the
 * process (`pnpm agentry <command>` runs it with tsx and the `@agentry/source` condition).
 */
import { runCli } from "./run-cli.js";

const code = await runCli(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
});
process.exit(code);
