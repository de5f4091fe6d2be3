#!/usr/bin/env node
// Smoke test of the production build: the compiled apps (apps/*/dist) run with plain `node`,
// without tsx and without the `@agentry/source` export condition, so every workspace import
// resolves to another package's dist/ and every Lua script / policy file must be shipped there.
//
//   node scripts/smoke-dist.mjs [--skip-build] [--root DIR]
//
// 1. `pnpm -r build` (unless --skip-build);
// 2. starts a private redis-server (AOF off, noeviction) on a free port;
// 3. starts `node <root>/apps/worker/dist/main.js` and `node <root>/apps/producer/dist/main.js`;
// 4. submits "What's the weather in Paris?" through POST /v1/tasks and waits until the task is
//    completed by the ScriptedModel (one `get_weather` tool call, budget, policy, audit on);
// 5. reads the task with the compiled CLI (`node <root>/apps/admin/dist/cli.js status <id> --json`)
//    and checks `audit verify`; then reads it again through the installed `agentry` command
//    (node_modules/.bin/agentry → apps/admin/bin/agentry.js → dist/cli.js);
// 6. SIGTERMs worker and producer, requires both to exit 0, stops Redis.
// Exits 0 when everything held, 1 with the failing step otherwise (and the apps' logs).
//
// --root runs the apps of another tree laid out like the repo, e.g. the runtime image's tree
// assembled by scripts/image-tree.mjs (see scripts/image-smoke.sh).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const skipBuild = args.includes("--skip-build");
const rootAt = args.indexOf("--root");
const root = rootAt >= 0 ? resolve(args[rootAt + 1] ?? ".") : repo;
const TASK_TIMEOUT_MS = 60_000;

const log = (msg) => process.stderr.write(`smoke-dist: ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** A child with its output kept for the failure report. */
function start(name, command, argv, env) {
  // A clean NODE_OPTIONS: no `--import tsx`, no `--conditions=@agentry/source` leaking in.
  const child = spawn(command, argv, {
    cwd: root,
    env: { ...process.env, NODE_OPTIONS: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = { name, child, output: "", exit: undefined };
  child.stdout.on("data", (b) => (proc.output += b));
  child.stderr.on("data", (b) => (proc.output += b));
  proc.exited = new Promise((res) =>
    child.once("exit", (code, signal) => res((proc.exit = { code, signal }))),
  );
  return proc;
}

/** True when a Redis on 127.0.0.1:port answers PING. */
function ping(port) {
  return new Promise((res) => {
    const sock = connect(port, "127.0.0.1", () => sock.write("PING\r\n"));
    sock.setTimeout(1_000, () => sock.destroy());
    sock.once("data", (b) => {
      res(b.toString().startsWith("+PONG"));
      sock.destroy();
    });
    sock.once("error", () => res(false));
    sock.once("close", () => res(false));
  });
}

async function waitFor(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      if (err.fatal) throw err;
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000} s${last ? ` (${last.message})` : ""}`);
}

const procs = [];
const dataDir = mkdtempSync(join(tmpdir(), "agentry-smoke-"));

async function main() {
  if (!skipBuild) {
    log("pnpm -r build");
    const built = spawnSync("pnpm", ["-r", "build"], { cwd: repo, stdio: "inherit" });
    if (built.status !== 0) throw new Error("pnpm -r build failed");
  }

  const redisPort = await freePort();
  const redis = start(
    "redis",
    "redis-server",
    [
      "--port",
      String(redisPort),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dataDir,
      "--maxmemory-policy",
      "noeviction",
    ],
    {},
  );
  procs.push(redis);
  const REDIS_URL = `redis://127.0.0.1:${redisPort}`;
  await waitFor("redis-server answering", () => ping(redisPort), 10_000);

  const workerPort = await freePort();
  const producerPort = await freePort();
  const env = {
    REDIS_URL,
    AGENTRY_PREFIX: "agentry-smoke",
    AGENTRY_LLM: "scripted",
    LOG_LEVEL: "info",
    OTEL_EXPORTER_OTLP_ENDPOINT: "",
    ANTHROPIC_API_KEY: "",
  };
  const worker = start("worker", process.execPath, ["apps/worker/dist/main.js"], {
    ...env,
    AGENTRY_WORKER_PORT: String(workerPort),
    AGENTRY_CONCURRENCY: "2",
  });
  const producer = start("producer", process.execPath, ["apps/producer/dist/main.js"], {
    ...env,
    PORT: String(producerPort),
    HOST: "127.0.0.1",
    AGENTRY_API_KEYS: "smoke-key=smoke-tenant",
  });
  procs.push(worker, producer);

  const api = `http://127.0.0.1:${producerPort}`;
  const headers = { authorization: "Bearer smoke-key", "content-type": "application/json" };
  await waitFor(
    "worker /healthz 200",
    async () => (await fetch(`http://127.0.0.1:${workerPort}/healthz`)).ok,
    30_000,
  );
  await waitFor("producer /healthz 200", async () => (await fetch(`${api}/healthz`)).ok, 30_000);
  log(`worker (:${workerPort}) and producer (:${producerPort}) healthy, started from ${root}`);

  const submitted = await fetch(`${api}/v1/tasks`, {
    method: "POST",
    headers,
    body: JSON.stringify({ prompt: "What's the weather in Paris?" }),
  });
  if (submitted.status !== 202)
    throw new Error(`POST /v1/tasks answered ${submitted.status}: ${await submitted.text()}`);
  const { taskId } = await submitted.json();
  log(`submitted ${taskId}`);
  const status = await waitFor(
    `task ${taskId} completed`,
    async () => {
      const s = await (await fetch(`${api}/v1/tasks/${taskId}`, { headers })).json();
      if (s.state === "failed")
        throw Object.assign(new Error(`task failed: ${JSON.stringify(s.error)}`), { fatal: true });
      return s.state === "completed" ? s : undefined;
    },
    TASK_TIMEOUT_MS,
  );
  const text = JSON.stringify(status.result ?? {});
  log(`completed: ${text.slice(0, 200)}`);
  if (!/paris/i.test(text)) throw new Error(`the answer does not mention Paris: ${text}`);

  const metrics = await (await fetch(`http://127.0.0.1:${workerPort}/metrics`)).text();
  if (!/agentry_tasks_total\{[^}]*outcome="completed"/.test(metrics))
    throw new Error("worker /metrics has no completed agentry_tasks_total");

  const cli = (argv) =>
    spawnSync(process.execPath, ["apps/admin/dist/cli.js", ...argv], {
      cwd: root,
      env: { ...process.env, NODE_OPTIONS: "", ...env },
      encoding: "utf8",
    });
  const cliStatus = cli(["status", taskId, "--json"]);
  if (cliStatus.status !== 0 || JSON.parse(cliStatus.stdout).state !== "completed")
    throw new Error(`agentry status: ${cliStatus.status} ${cliStatus.stdout}${cliStatus.stderr}`);
  const verify = cli(["audit", "verify"]);
  if (verify.status !== 0)
    throw new Error(`agentry audit verify: exit ${verify.status} ${verify.stdout}${verify.stderr}`);
  log("agentry status and audit verify (compiled CLI) passed");

  // The installed command (pnpm's shim of @agentry/admin's bin, linked at the root): plain node
  // on bin/agentry.js, which runs dist/cli.js; no tsx, no source condition.
  const bin = join(root, "node_modules", ".bin", "agentry");
  if (existsSync(bin)) {
    const installed = spawnSync(bin, ["status", taskId, "--json"], {
      cwd: root,
      env: { ...process.env, NODE_OPTIONS: "", ...env },
      encoding: "utf8",
    });
    if (installed.status !== 0 || JSON.parse(installed.stdout).state !== "completed")
      throw new Error(`installed agentry status: ${installed.status} ${installed.stdout}${installed.stderr}`);
    log("the installed agentry bin (compiled) passed");
  } else if (root === repo) {
    throw new Error(
      `no installed agentry command at ${bin} (the root package.json links @agentry/admin's bin)`,
    );
  }

  for (const p of [producer, worker]) p.child.kill("SIGTERM");
  const exits = await Promise.race([
    Promise.all([producer.exited, worker.exited]),
    sleep(20_000).then(() => undefined),
  ]);
  if (!exits) throw new Error("worker or producer did not exit within 20 s of SIGTERM");
  for (const p of [producer, worker])
    if (p.exit.code !== 0) throw new Error(`${p.name} exited with ${JSON.stringify(p.exit)} after SIGTERM`);
  log("worker and producer exited 0 after SIGTERM");
}

try {
  await main();
  log("OK");
} catch (err) {
  process.exitCode = 1;
  log(`FAILED: ${err.message}`);
  for (const p of procs)
    if (p.name !== "redis")
      process.stderr.write(`----- ${p.name} output (last 4000 chars)\n${p.output.slice(-4000)}\n`);
} finally {
  for (const p of procs) if (p.exit === undefined) p.child.kill("SIGKILL");
  await Promise.all(procs.map((p) => Promise.race([p.exited, sleep(3_000)])));
  rmSync(dataDir, { recursive: true, force: true });
}
