#!/usr/bin/env node
// The installed `agentry` command: runs the compiled CLI (dist/cli.js) with plain node, no tsx.
// This file is committed (dist/ is built), so package managers link the command even before the
// first build; until then it says how to build instead of failing with a module trace.
const cli = new URL("../dist/cli.js", import.meta.url);
try {
  await import(cli.href);
} catch (err) {
  // dist/cli.js, or a workspace package's dist/ it imports, is missing.
  if (err?.code === "ERR_MODULE_NOT_FOUND" && /[\\/]dist[\\/]/.test(String(err.message))) {
    process.stderr.write(
      "agentry: the CLI is not built: run `pnpm build` in the repository (or `pnpm agentry` to run it from source)\n",
    );
    process.exit(2);
  }
  throw err;
}
