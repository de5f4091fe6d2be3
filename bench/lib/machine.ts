/** Facts about the machine a benchmark ran on, recorded next to the figures. */
import { execFileSync } from "node:child_process";
import os from "node:os";
import type { createRedis } from "../../packages/core/src/index.js";
import { bullmqVersion } from "./bullmq.js";

/** What docs/benchmarks.md records about the run's machine. */
export interface MachineFacts {
  date: string;
  cpus: number;
  cpuModel: string;
  memoryGb: number;
  freeMemoryGb: number;
  loadAverage: [number, number, number];
  platform: string;
  node: string;
  redis: string;
  bullmq: string;
  /** Short hash of HEAD. */
  commit: string;
  /** Whether the working tree differed from that commit (tracked or untracked files). */
  dirty: boolean;
  /** What the server persists, read from it: figures with AOF on are not comparable with figures without. */
  persistence: string;
}

function git(args: string[], cwd: string): string {
  try {
    return execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

/** AOF and RDB settings of the server, or what could not be read. */
async function persistence(redis: ReturnType<typeof createRedis>): Promise<string> {
  const aof = /aof_enabled:(\d)/.exec(await redis.info("persistence"))?.[1] === "1";
  let save: string | undefined;
  try {
    save = ((await redis.config("GET", "save")) as string[])[1];
  } catch {
    // CONFIG may be renamed or forbidden on a server we were given.
  }
  const rdb =
    save === undefined
      ? "RDB snapshots unknown"
      : save.trim()
        ? `RDB snapshots (save ${save})`
        : "no RDB snapshots";
  return `${aof ? "AOF on" : "AOF off"}, ${rdb}`;
}

/**
 * Reads the facts now (the load average is the one at this moment); `root` is the repository
 * whose commit the figures come from.
 */
export async function machineFacts(
  redis: ReturnType<typeof createRedis>,
  root: string,
): Promise<MachineFacts> {
  const info = await redis.info("server");
  const dirty = git(["status", "--porcelain"], root) !== "";
  const [l1, l5, l15] = os.loadavg() as [number, number, number];
  const r = (n: number) => Math.round(n * 100) / 100;
  return {
    date: new Date().toISOString(),
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? "?",
    memoryGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    freeMemoryGb: Math.round((os.freemem() / 1024 ** 3) * 10) / 10,
    loadAverage: [r(l1), r(l5), r(l15)],
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: `${/redis_version:(\S+)/.exec(info)?.[1] ?? "?"} (${/redis_mode:(\S+)/.exec(info)?.[1] ?? "?"})`,
    bullmq: bullmqVersion,
    commit: git(["rev-parse", "--short", "HEAD"], root) || "?",
    dirty,
    persistence: await persistence(redis),
  };
}
