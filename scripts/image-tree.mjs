#!/usr/bin/env node
// Assembles the two halves of the runtime image's /app tree, laid out like the repo so that
// workspace symlinks in node_modules and relative paths between packages keep working:
//
//   node scripts/image-tree.mjs manifests <repo> <out>
//     package.json of the root and of every workspace project, pnpm-lock.yaml,
//     pnpm-workspace.yaml and .npmrc: enough for `pnpm install --frozen-lockfile --prod`.
//   node scripts/image-tree.mjs runtime <repo> <out>
//     what the compiled apps read at run time: every project's dist/ (JS and the Lua scripts
//     scripts/copy-assets.mjs put there) and the data files listed in RUNTIME_FILES.
//
// The Dockerfile runs both; scripts/image-smoke.sh runs them without Docker.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

/** Data files read at run time, relative to the repo root. */
export const RUNTIME_FILES = [
  // The worker's default policy: apps/worker/dist/build-worker.js reads
  // ../../../packages/governance/policies/default.yaml (or AGENTRY_POLICY_FILE).
  "packages/governance/policies",
];

/** Projects that are not part of the running system (test fixtures, deployment tests). */
export const NOT_SHIPPED = ["packages/testkit", "infra"];

/** Workspace project directories, from the `packages:` globs of pnpm-workspace.yaml (`dir/*` or `dir`). */
export function workspaceProjects(repo) {
  const text = readFileSync(join(repo, "pnpm-workspace.yaml"), "utf8");
  const block = /^packages:\s*\n((?:[ \t]*-.*\n?)+)/m.exec(text);
  if (!block) throw new Error("pnpm-workspace.yaml has no packages: list");
  const globs = [...block[1].matchAll(/-\s*["']?([^"'\s#]+)["']?/g)].map((m) => m[1]);
  const projects = [];
  for (const glob of globs) {
    if (glob.endsWith("/*")) {
      const parent = glob.slice(0, -2);
      if (!existsSync(join(repo, parent))) continue;
      for (const name of readdirSync(join(repo, parent)).sort()) {
        if (existsSync(join(repo, parent, name, "package.json"))) projects.push(`${parent}/${name}`);
      }
    } else if (!glob.includes("*")) {
      if (existsSync(join(repo, glob, "package.json"))) projects.push(glob);
    } else {
      throw new Error(`unsupported workspace glob ${glob}`);
    }
  }
  return projects;
}

function copy(repo, out, rel) {
  const from = join(repo, rel);
  if (!existsSync(from)) return false;
  const to = join(out, rel);
  mkdirSync(dirname(to), { recursive: true });
  cpSync(from, to, { recursive: statSync(from).isDirectory() });
  return true;
}

function main() {
  const [mode, repoArg, outArg] = process.argv.slice(2);
  if (!["manifests", "runtime"].includes(mode ?? "") || !repoArg || !outArg) {
    console.error("usage: image-tree.mjs manifests|runtime <repo> <out>");
    process.exit(2);
  }
  const repo = resolve(repoArg);
  const out = resolve(outArg);
  mkdirSync(out, { recursive: true });
  const projects = workspaceProjects(repo);
  if (mode === "manifests") {
    for (const f of ["package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml", ".npmrc"]) copy(repo, out, f);
    for (const p of projects) copy(repo, out, `${p}/package.json`);
    return;
  }
  const missing = [];
  for (const p of projects.filter((p) => !NOT_SHIPPED.includes(p))) {
    if (!copy(repo, out, `${p}/dist`)) missing.push(`${p}/dist`);
  }
  for (const f of RUNTIME_FILES) if (!copy(repo, out, f)) missing.push(f);
  if (missing.length > 0) {
    console.error(`image-tree: missing (run the build first): ${missing.join(", ")}`);
    process.exit(1);
  }
}

main();
