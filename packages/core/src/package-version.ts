import { readFileSync } from "node:fs";

/**
 * The `version` of the package.json at `packageJsonUrl` (e.g. `new URL("../package.json",
 * import.meta.url)`, which names the same file from `src/` and `dist/`), for `--version` and the
 * `service.version` of traces. `unknown` when the file cannot be read or has no string version:
 * a version is reported, never required.
 */
export function packageVersion(packageJsonUrl: URL): string {
  try {
    const pkg = JSON.parse(readFileSync(packageJsonUrl, "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}
