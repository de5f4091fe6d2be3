import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url));

/** A worker process started from apps/worker/src/main.ts, as in production. */
export interface WorkerProcess {
  readonly child: ChildProcess;
  readonly name: string;
  output(): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

/**
 * Starts a worker process with the given environment (added to this process's); `nodeArgs` go to
 * node before the entry point (e.g. `--import` of a fault preload). `app: "producer"` starts
 * apps/producer/src/main.ts instead, the same way.
 */
export function startWorkerProcess(
  name: string,
  env: Record<string, string>,
  options: { nodeArgs?: string[]; app?: "worker" | "producer" } = {},
): WorkerProcess {
  const main =
    options.app === "producer" ? fileURLToPath(new URL("../../producer/src/main.ts", import.meta.url)) : MAIN;
  const args = ["--conditions=@agentry/source", "--import", "tsx", ...(options.nodeArgs ?? []), main];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, AGENTRY_WORKER_PORT: "0", LOG_LEVEL: "info", AGENTRY_WORKER_NAME: name, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    name,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Resolves once the worker logged that it started (or rejects with its output). The deadline only
 * bounds a failure: a process that compiles its TypeScript on start takes tens of seconds when
 * both cores are busy.
 */
export async function waitStarted(w: WorkerProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!w.output().includes('"event":"worker-started"')) {
    if (w.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`worker ${w.name} did not start:\n${w.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs an app's main with `env` until it exits; its exit code and output. */
export function runMain(
  app: "worker" | "producer",
  env: Record<string, string>,
): Promise<{ code: number | null; out: string }> {
  const main = fileURLToPath(new URL(`../../${app}/src/main.ts`, import.meta.url));
  const child = spawn(process.execPath, ["--conditions=@agentry/source", "--import", "tsx", main], {
    env: {
      ...process.env,
      AGENTRY_LLM: "scripted",
      AGENTRY_WORKER_PORT: "0",
      PORT: "0",
      AGENTRY_INSECURE_DEV_KEY: "1",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (out += b.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  return new Promise((resolve) =>
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    }),
  );
}

/** Waits for the process to exit on its own (it is killed after `guardMs` as a guard). */
export async function exitCodeOf(w: WorkerProcess, guardMs = 90_000): Promise<number | null> {
  const guard = setTimeout(() => void w.kill(), guardMs);
  try {
    return await new Promise<number | null>((resolve) => {
      if (w.child.exitCode !== null) resolve(w.child.exitCode);
      else w.child.once("exit", (code) => resolve(code));
    });
  } finally {
    clearTimeout(guard);
  }
}
