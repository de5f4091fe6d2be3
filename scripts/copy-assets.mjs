#!/usr/bin/env node
// Copies the non-TypeScript files a package loads at run time (Lua scripts beside the code that
// runs them, JSON, YAML...) from src/ to dist/, keeping their relative paths, so that
// `new URL("./x.lua", import.meta.url)` resolves the same from dist/*.js as from src/*.ts.
// tsc copies none of them. Run from a package directory after `tsc -p tsconfig.build.json`.
//
//   node ../../scripts/copy-assets.mjs [srcDir=src] [outDir=dist]
import { cpSync, existsSync, readdirSync, statSync } from "node:fs";
import { extname, join, relative } from "node:path";

/** Extensions never copied: sources (compiled by tsc), and test-only files. */
const SKIP = new Set([".ts", ".tsx", ".mts", ".cts"]);

const [srcDir = "src", outDir = "dist"] = process.argv.slice(2);
if (!existsSync(srcDir)) {
  console.error(`copy-assets: no ${srcDir}/ in ${process.cwd()}`);
  process.exit(1);
}

let copied = 0;
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      // Test fixtures are not shipped.
      if (name === "__fixtures__" || name === "fixtures") continue;
      walk(path);
    } else if (!SKIP.has(extname(name)) && !name.endsWith(".md")) {
      cpSync(path, join(outDir, relative(srcDir, path)));
      copied += 1;
    }
  }
};
walk(srcDir);
if (process.env.AGENTRY_COPY_ASSETS_VERBOSE)
  console.error(`copy-assets: ${copied} file(s) from ${srcDir}/ to ${outDir}/`);
