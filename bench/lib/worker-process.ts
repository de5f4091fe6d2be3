import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * One worker process as `pnpm worker` runs it (apps/worker/src/main.ts from source), with `env`
 * on top of this process's; resolves once it logged that it started, rejects with the end of its
 * output if it exits first. Its output keeps being read, so a full pipe never blocks it.
 */
export async function startWorker(name: string, env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ["--conditions=@agentry/source", "--import", "tsx", "apps/worker/src/main.ts"],
    {
      cwd: ROOT,
      env: { ...process.env, ...env, AGENTRY_WORKER_NAME: name },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let tail = "";
  await new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer) => {
      tail = (tail + b.toString()).slice(-4000);
      if (tail.includes('"event":"worker-started"')) resolve();
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`worker ${name} exited with ${code}:\n${tail}`)));
  });
  child.stdout?.removeAllListeners("data").resume();
  child.stderr?.removeAllListeners("data").resume();
  return child;
}

/** SIGTERM to each worker; resolves once all have exited. */
export async function stopWorkers(workers: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.exitCode !== null) return resolve();
          w.once("exit", () => resolve());
          w.kill("SIGTERM");
        }),
    ),
  );
}
