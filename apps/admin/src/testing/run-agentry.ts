import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { runCli } from "../run-cli.js";

/** What one in-process `agentry` run produced. */
export interface AgentryRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Internal. For test use only. Runs `agentry <args>` in-process with exactly `env` (nothing
 * from the test process's own environment), capturing stdout and stderr. `onStdout` and
 * `onStderr` see each chunk as it is written (to react to live output).
 */
export async function runAgentry(
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { stdin?: string; onStdout?: (chunk: string) => void; onStderr?: (chunk: string) => void } = {},
): Promise<AgentryRun> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, {
    env,
    stdout: {
      write: (s: string) => {
        stdout += s;
        options.onStdout?.(s);
      },
    },
    stderr: {
      write: (s: string) => {
        stderr += s;
        options.onStderr?.(s);
      },
    },
    ...(options.stdin === undefined ? {} : { stdin: Readable.from([options.stdin]) }),
  });
  return { code, stdout, stderr };
}

/** Internal. For test use only. A temporary directory removed by the returned `remove()`. */
export function tempDir(label: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `agentry-${label}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
