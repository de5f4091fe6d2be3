import { defineConfig } from "vitest/config";

/**
 * Shared vitest settings for every package. Workspace packages resolve to their
 * TypeScript source through the `@agentry/source` condition, so no build step is needed.
 * Each run also writes a JSON report that `.ci/run` sums into its closing totals line.
 */
export function agentryVitestConfig(options: { testTimeoutMs?: number } = {}) {
  return defineConfig({
    resolve: { conditions: ["@agentry/source"] },
    ssr: { resolve: { conditions: ["@agentry/source"] } },
    test: {
      globalSetup: [new URL("./packages/testkit/src/redis/global-setup.ts", import.meta.url).pathname],
      testTimeout: options.testTimeoutMs ?? 30_000,
      hookTimeout: 60_000,
      reporters: ["default", "json"],
      outputFile: { json: ".vitest-report.json" },
      pool: "forks",
      // A package whose run finds no test fails: a suite that ran nothing must not pass unnoticed.
      passWithNoTests: false,
    },
  });
}
