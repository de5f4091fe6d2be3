import { execFile, spawn, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOfSession, shardPrefixes } from "@agentry/core";
import { startFakeAnthropic, startRedisServer, type FakeAnthropic } from "@agentry/testkit";
import { AgentryClient, BudgetLedger } from "@agentry/runtime";
import { RedisSessionTurns } from "@agentry/memory";
import { ApprovalStore, AuditLog, verifyChainsWithAnchors, verifyJsonl } from "@agentry/governance";
import { createTestApprovers } from "@agentry/governance/testing";
import { referenceReply } from "@agentry/reference/testing";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const execFileAsync = promisify(execFile);
const ACL_FILE = join(repo, "infra/redis/users.acl");
const REDIS_CONF = join(repo, "infra/redis/redis.conf");
/** The prefix the shipped ACL file is written for, untagged (one server) and tagged (Redis Cluster). */
const PREFIX = "agentry";
const PASSWORDS = {
  producer: "producer-dev-password",
  worker: "worker-dev-password",
  admin: "admin-dev-password",
  auditor: "auditor-dev-password",
  keda: "keda-dev-password",
} as const;
type Role = keyof typeof PASSWORDS;
/** Test-only superuser, appended to a copy of the shipped file, used only to read ACL LOG. */
const INSPECTOR = "acl-test-inspector";

let dir: string;
/** The shipped ACL file plus the test-only inspector, which each scenario's server loads. */
let aclFile: string;
/** The Messages API the worker process calls through the real SDK (the fake answers by the reference tools' rule table, `referenceReply`). */
let fake: FakeAnthropic;
const connections: Redis[] = [];
/** A denial, as a command (`NOPERM ...`) or as a command inside a Lua script (`The user executing the script can't ...`). */
const DENIED = /NOPERM|no permissions|The user executing the script can't/;

/** A session id of `tenant` that routes to `shard` of `shards`. */
function sessionOn(tenant: string, shard: number, shards: number): string {
  for (let i = 0; ; i++) if (shardOfSession(tenant, `acl-${i}`, shards) === shard) return `acl-${i}`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "agentry-acl-"));
  aclFile = join(dir, "users.acl");
  writeFileSync(aclFile, `${readFileSync(ACL_FILE, "utf8")}user ${INSPECTOR} on >inspect ~* &* +@all\n`);
  fake = await startFakeAnthropic({ handler: referenceReply });
});

afterAll(async () => {
  for (const c of connections) c.disconnect();
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("infra/redis/redis.conf", () => {
  it("loads in redis-server with AOF on, everysec fsync, noeviction and compact job hashes", async () => {
    // The container paths (dir /data, the mounted aclfile) are swapped for local ones; every
    // other line is parsed by the real server.
    const conf = readFileSync(REDIS_CONF, "utf8")
      .replace(/^dir .*$/m, `dir ${dir}`)
      .replace(/^aclfile .*$/m, `aclfile ${ACL_FILE}`);
    const confPath = join(dir, "redis.conf");
    writeFileSync(confPath, conf);
    const { freePort } = await import("@agentry/testkit");
    const port = await freePort();
    const child = spawn("redis-server", [confPath, "--port", String(port), "--bind", "127.0.0.1"], {
      stdio: "ignore",
    });
    try {
      const r = new Redis(`redis://worker:${PASSWORDS.worker}@127.0.0.1:${port}`, {
        retryStrategy: (n) => (n > 50 ? null : 100),
        enableReadyCheck: false,
      });
      r.on("error", () => undefined);
      const info = await r.info();
      // A kept job (data, options and result past 64 bytes each) stays a compact listpack.
      await r.hset("agentry:tasks:encoding-check", "data", "d".repeat(220), "opts", "o".repeat(210));
      expect(await r.call("OBJECT", "ENCODING", "agentry:tasks:encoding-check")).toBe("listpack");
      await r.del("agentry:tasks:encoding-check");
      r.disconnect();
      expect(info).toMatch(/aof_enabled:1/);
      expect(info).toMatch(/maxmemory_policy:noeviction/);
      const anonymous = new Redis(`redis://127.0.0.1:${port}`, {
        enableReadyCheck: false,
        maxRetriesPerRequest: 1,
      });
      anonymous.on("error", () => undefined);
      await expect(anonymous.ping()).resolves.toBe("PONG");
      await expect(anonymous.get("agentry:audit:head")).rejects.toThrow(/NOPERM/);
      anonymous.disconnect();
      expect(conf).toMatch(/^appendfsync everysec$/m);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

/**
 * The system under the shipped ACL: the real worker process as `worker`, an `AgentryClient` as
 * `producer`, the admin's stores as `admin`, KEDA's script as `keda`, on a server of its own (so
 * its `ACL LOG` holds this scenario's denials only). `shards` > 1 runs a sharded deployment
 * (`AGENTRY_SHARDS`), whose per-shard keys the file must grant as well as the global ones.
 */
function aclScenario(prefix: string, shards: number, lanes = 1): void {
  describe(`infra/redis/users.acl, AGENTRY_PREFIX=${prefix}, AGENTRY_SHARDS=${shards}, AGENTRY_AUDIT_LANES=${lanes}`, () => {
    const approvers = createTestApprovers(["alice"]);
    const shardKeys = shardPrefixes(prefix, shards);
    /** The global prefix (budgets, tenant settings, rate buckets, idempotency claims). */
    const G = prefix;
    /** The last shard's prefix (the global one with one shard): where denials are provoked. */
    const S = shardKeys[shards - 1] as string;
    /** Every audit chain: each shard's, and with several shards the global slot's too. */
    const chains = shards === 1 ? shardKeys : [G, ...shardKeys];
    /** The lane the worker writes: the first one it may lease (lane 0 with one lane). */
    const workerLane = lanes > 1 ? 1 : 0;
    /** Tasks that ran to a response so far, each with one `response` audit entry. */
    let responses = 0;
    let server: Awaited<ReturnType<typeof startRedisServer>>;
    let worker: ChildProcess | undefined;
    let workerLog = "";
    let producer: AgentryClient;

    const urlFor = (role: Role) => `redis://${role}:${PASSWORDS[role]}@127.0.0.1:${server.port}`;
    const connect = (role: Role | typeof INSPECTOR): Redis => {
      const url = role === INSPECTOR ? `redis://${INSPECTOR}:inspect@127.0.0.1:${server.port}` : urlFor(role);
      const r = new Redis(url, { maxRetriesPerRequest: 1, enableReadyCheck: false });
      r.on("error", () => undefined);
      connections.push(r);
      return r;
    };
    const clientAs = (role: Role) => {
      const redis = connect(role);
      return new AgentryClient({
        redis,
        prefix,
        shards,
        sessionOrder: (p) => new RedisSessionTurns({ redis, prefix: p }),
      });
    };
    const waitFor = (taskId: string) =>
      producer.wait(taskId, { timeoutMs: 90_000 }).catch((err: unknown) => {
        throw new Error(`${String(err)}\nworker output:\n${workerLog}`);
      });

    beforeAll(async () => {
      server = await startRedisServer({ args: ["--aclfile", aclFile] });
      const approversFile = join(dir, "approvers");
      writeFileSync(approversFile, approvers.fileText);
      // The real worker process, as `pnpm worker` runs it, connected as the `worker` user.
      worker = spawn(
        process.execPath,
        ["--conditions=@agentry/source", "--import", "tsx", "apps/worker/src/main.ts"],
        {
          cwd: repo,
          env: {
            ...process.env,
            REDIS_URL: urlFor("worker"),
            AGENTRY_PREFIX: prefix,
            AGENTRY_SHARDS: String(shards),
            AGENTRY_AUDIT_LANES: String(lanes),
            // Sharded deployments run with budget allowances: the worker role must allow them too.
            AGENTRY_BUDGET_ALLOWANCE_CALLS: shards > 1 ? "4" : "0",
            AGENTRY_LLM: "anthropic",
            ANTHROPIC_API_KEY: "test-key",
            ANTHROPIC_BASE_URL: fake.url,
            OTEL_EXPORTER_OTLP_ENDPOINT: "",
            AGENTRY_WORKER_PORT: "0",
            AGENTRY_APPROVERS_FILE: approversFile,
            LOG_LEVEL: "warn",
          },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      worker.stdout?.on("data", (b: Buffer) => (workerLog += b.toString()));
      worker.stderr?.on("data", (b: Buffer) => (workerLog += b.toString()));
      producer = clientAs("producer");
    });

    afterAll(async () => {
      await producer?.close();
      if (worker && worker.exitCode === null) {
        worker.kill("SIGTERM");
        await new Promise((resolve) => worker?.once("exit", resolve));
      }
      await server?.stop();
    });

    it("producer submits a task to every shard through AgentryClient and the worker runs each end to end", async () => {
      const cities = ["Paris", "Lisbon", "Madrid", "Vienna"];
      const submitted = await Promise.all(
        shardKeys.map((_, shard) =>
          producer.submit(
            {
              prompt: `What's the weather in ${cities[shard % cities.length]}?`,
              sessionId: sessionOn("acme", shard, shards),
            },
            { tenant: "acme" },
          ),
        ),
      );
      for (const [shard, { taskId }] of submitted.entries()) {
        const result = await waitFor(taskId);
        expect(result.text).toMatch(/^In [A-Z][a-z]+ it is -?\d+°C and [a-z ]+\.$/);
        expect((await producer.status(taskId)).state).toBe("completed");
        expect((await producer.locate(taskId))?.prefix).toBe(shardKeys[shard]);
        responses++;
      }
    });

    it("resubmits of one idempotency key naming sessions on every shard run one task", async () => {
      const results = await Promise.all(
        [...shardKeys, ...shardKeys].map((_, i) =>
          producer.submit(
            {
              prompt: "What's the weather in Berlin?",
              sessionId: sessionOn("acme", i % shards, shards),
              idempotencyKey: "acl-resubmit",
            },
            { tenant: "acme" },
          ),
        ),
      );
      expect(new Set(results.map((r) => r.taskId)).size).toBe(1);
      // With shards, the claim on the global slot lets one submit enqueue (the producer may use
      // it). With one queue BullMQ's job id dedupes the adds, though a concurrent loser is told
      // `deduplicated: false` (the add answers with its own data); the audit check below counts
      // the task's one response either way.
      if (shards > 1) expect(results.filter((r) => !r.deduplicated)).toHaveLength(1);
      await expect(waitFor((results[0] as { taskId: string }).taskId)).resolves.toMatchObject({
        text: expect.stringMatching(/^In Berlin it is /),
      });
      responses++;
    });

    it("producer gets NOPERM on approvals, budgets and the audit log", async () => {
      const r = connect("producer");
      await expect(r.hset(`${S}:approval:forged`, "status", "approved")).rejects.toThrow(/NOPERM/);
      await expect(r.zadd(`${S}:approvals:resolved`, 1, "forged")).rejects.toThrow(/NOPERM/);
      await expect(r.publish(`${S}:approvals:events`, "{}")).rejects.toThrow(/NOPERM/);
      await expect(r.hgetall(`${G}:budget:limit:global`)).rejects.toThrow(/NOPERM/);
      await expect(r.xrange(`${S}:audit`, "-", "+")).rejects.toThrow(/NOPERM/);
      // Through Agentry's own code too: the decide script is refused for the keys it declares.
      const store = new ApprovalStore({ redis: r, prefix: S });
      await expect(store.list({ status: "pending" })).rejects.toThrow(/NOPERM/);
    });

    it("a delete pauses for approval; admin lists it across shards and decides it; the worker resumes the task", async () => {
      const { taskId } = await producer.submit(
        { prompt: "Please delete the cache-7 in staging", sessionId: sessionOn("acme", shards - 1, shards) },
        { tenant: "acme" },
      );
      const admin = connect("admin");
      // As `agentry approvals list` does: every shard's store.
      const stores = shardKeys.map(
        (p) => new ApprovalStore({ redis: admin, prefix: p, approverKeys: approvers.keys }),
      );
      let pending: { store: ApprovalStore; id: string }[] = [];
      await expect
        .poll(
          async () => {
            pending = [];
            for (const store of stores)
              for (const a of await store.list({ status: "pending" }))
                if (a.taskId === taskId) pending.push({ store, id: a.id });
            return pending.length;
          },
          { timeout: 90_000, interval: 100 },
        )
        .toBe(1);
      expect(pending[0]?.store).toBe(stores[shards - 1]);
      // The admin reads the task's state (read-only access to the queue), on whichever shard.
      const adminClient = new AgentryClient({ redis: admin, prefix, shards });
      // The approval is recorded just before the task parks: wait for the park itself.
      await expect
        .poll(async () => (await adminClient.status(taskId)).state, { timeout: 30_000 })
        .toBe("awaiting_approval");
      const { store, id } = pending[0] as { store: ApprovalStore; id: string };
      const decided = await store.tryDecide(approvers.sign("alice", id, "approve"));
      expect(decided.type).toBe("decided");
      const result = await waitFor(taskId);
      expect(result.text).toBe("Done: cache-7 was deleted in staging (simulated).");
      responses++;
      await adminClient.close();
    });

    it("admin sets budgets and verifies every audit chain, but the logs are append-only", async () => {
      const admin = connect("admin");
      const ledger = new BudgetLedger({ redis: admin, prefix: G });
      await ledger.setLimit("tenant:acme", { maxTokens: 1_000_000, period: "day" });
      expect(await ledger.getLimit("tenant:acme")).toMatchObject({ maxTokens: 1_000_000 });
      let responseEntries = 0;
      let onWorkerLane = 0;
      for (const chain of chains)
        for (let lane = 0; lane < lanes; lane++) {
          const audit = new AuditLog({ redis: admin, prefix: chain, lane });
          const verified = await audit.verify();
          expect(verified.ok).toBe(true);
          const entries = await audit.read({ count: 10_000 });
          expect(verified.count).toBe(entries.length);
          responseEntries += entries.filter((e) => e.type === "response").length;
          if (lane === workerLane) onWorkerLane += entries.filter((e) => e.type === "response").length;
        }
      // Every task that ran to a response so far, once, on the chain of its shard (on the lane the
      // worker leased).
      expect(responseEntries).toBe(responses);
      expect(onWorkerLane).toBe(responses);
      await expect(admin.del(`${S}:audit`)).rejects.toThrow(/NOPERM/);
      await expect(admin.xtrim(`${S}:audit`, "MAXLEN", 0)).rejects.toThrow(/NOPERM/);
      await expect(admin.eval(`return redis.call("DEL", KEYS[1])`, 1, `${S}:audit`)).rejects.toThrow(DENIED);
    });

    it("admin caps and weights a tenant and reads every tenant's load on every shard (agentry tenants set/show)", async () => {
      const asAdmin = new AgentryClient({ redis: connect("admin"), prefix, shards });
      await expect(asAdmin.setTenantSettings("acme", { maxRunning: 50, weight: 2 })).resolves.toMatchObject({
        tenant: "acme",
        maxRunning: 50,
        weight: 2,
      });
      const loads = await asAdmin.tenantLoad();
      expect(loads.find((l) => l.tenant === "acme")).toMatchObject({
        maxRunning: 50,
        weight: 2,
        running: expect.any(Number),
        waiting: expect.any(Number),
      });
      await asAdmin.setTenantSettings("acme", { maxRunning: null, weight: 1 });
      await asAdmin.close();
    });

    it("admin cannot take jobs, submit tasks or write the queue", async () => {
      const admin = connect("admin");
      // BullMQ's own job-taking path (moveToActive) with the admin's credentials, on the task's shard.
      const { taskId } = await producer.submit(
        { prompt: "What's the weather in Oslo?", sessionId: sessionOn("acme", shards - 1, shards) },
        { tenant: "acme" },
      );
      const takerConnection = new Redis(urlFor("admin"), {
        maxRetriesPerRequest: null,
        enableReadyCheck: false,
      });
      takerConnection.on("error", () => undefined);
      connections.push(takerConnection);
      const taker = new Worker(`tasks`, async () => "taken", {
        connection: takerConnection,
        prefix: S,
        autorun: false,
      });
      taker.on("error", () => undefined);
      await expect(taker.getNextJob("admin-token")).rejects.toThrow(DENIED);
      await taker.close();
      // The task the admin tried to take is still there for a real worker.
      await expect(waitFor(taskId)).resolves.toMatchObject({
        text: expect.stringMatching(/^In Oslo it is /),
      });
      responses++;
      await expect(admin.lmove(`${S}:tasks:wait`, `${S}:tasks:active`, "LEFT", "LEFT")).rejects.toThrow(
        /NOPERM/,
      );
      const asAdmin = new AgentryClient({ redis: admin, prefix, shards });
      await expect(
        asAdmin.submit(
          { prompt: "hello", sessionId: sessionOn("acme", shards - 1, shards) },
          { tenant: "acme" },
        ),
      ).rejects.toThrow(DENIED);
      await asAdmin.close();
    });

    it("the worker streams a task's text; the producer and the admin follow it (SSE, agentry watch)", async () => {
      const { taskId } = await producer.submit(
        { prompt: "What's the weather in Rome?", sessionId: sessionOn("acme", shards - 1, shards) },
        { tenant: "acme" },
      );
      const asAdmin = new AgentryClient({ redis: connect("admin"), prefix, shards });
      try {
        const follow = async (client: AgentryClient) => {
          const texts: string[] = [];
          let end = "";
          for await (const e of client.follow(taskId, { timeoutMs: 90_000 })) {
            if (e.type === "delta") texts.push(e.text);
            if (e.type === "completed") end = e.result.text;
          }
          return { text: texts.join(""), end };
        };
        const [asProducer, asOperator] = await Promise.all([follow(producer), follow(asAdmin)]);
        expect(asProducer.end).toMatch(/Rome/);
        // Both saw the final step's words (the scripted model streams every answer).
        expect(asProducer.text.endsWith(asProducer.end)).toBe(true);
        expect(asOperator).toEqual(asProducer);
        responses++;
      } finally {
        await asAdmin.close();
      }
    });

    it("no role can run dangerous commands; the worker cannot delete the audit log", async () => {
      for (const role of ["producer", "worker", "admin"] as const) {
        const r = connect(role);
        await expect(r.flushall()).rejects.toThrow(/NOPERM/);
        await expect(r.config("GET", "*")).rejects.toThrow(/NOPERM/);
        await expect(r.keys("*")).rejects.toThrow(/NOPERM/);
        await expect(r.call("SCRIPT", "FLUSH")).rejects.toThrow(/NOPERM/);
      }
      const w = connect("worker");
      await expect(w.del(`${S}:audit`)).rejects.toThrow(/NOPERM/);
      await expect(w.xdel(`${S}:audit`, "1-0")).rejects.toThrow(/NOPERM/);
      // SET would replace the stream (or the head) with a string: only once markers take SET.
      await expect(w.set(`${S}:audit`, "x")).rejects.toThrow(/NOPERM/);
      await expect(w.set(`${S}:audit:head`, "x")).rejects.toThrow(/NOPERM/);
      if (lanes > 1) {
        // A lane is as append-only as lane 0; only its lease may be deleted.
        await expect(w.del(`${S}:audit:lane:1`)).rejects.toThrow(/NOPERM/);
        await expect(w.xtrim(`${S}:audit:lane:1`, "MAXLEN", 0)).rejects.toThrow(/NOPERM/);
        await expect(
          w.eval(`return redis.call("DEL", KEYS[1])`, 1, `${S}:audit:lane:1:head`),
        ).rejects.toThrow(DENIED);
      }
    });

    it("the producer can run its per-tenant submit rate limit (apps/producer's token bucket script)", async () => {
      const script = readFileSync(
        join(repo, "apps/producer/src/rate-limit/take-submit-tokens-1.lua"),
        "utf8",
      );
      const p = connect("producer");
      const bucket = `${G}:ratelimit:submit:acme`;
      // 1 token per second, burst 3: three tasks pass, a fourth waits about a second.
      expect(await p.eval(script, 1, bucket, 1, 3, 3)).toEqual([1, 0, 0]);
      const [taken, waitMs] = (await p.eval(script, 1, bucket, 1, 3, 1)) as [number, number];
      expect(taken).toBe(0);
      expect(waitMs).toBeGreaterThan(0);
      expect(waitMs).toBeLessThanOrEqual(1_000);
      expect(await p.pttl(bucket)).toBeGreaterThan(0);
    });

    it("the producer may set the wake flag its cancel leaves for a session's next task (AgentryClient.cancel)", async () => {
      const p = connect("producer");
      for (const shard of shardKeys)
        await expect(p.set(`${shard}:wake:task_acl`, "1", "EX", 5)).resolves.toBe("OK");
    });

    it("the worker appends audit entries fenced by a task's lock and deduplicated by a once id; a stale token writes nothing", async () => {
      const w = connect("worker");
      for (const shard of shardKeys) {
        const lock = `${shard}:tasks:acl-job:lock`;
        await w.set(lock, "token-1");
        const audit = new AuditLog({ redis: w, prefix: shard });
        const first = await audit.append(
          { type: "request", taskId: "acl-job", data: { prompt: "x" } },
          { fence: { key: lock, token: "token-1" }, once: "acme:acl-job:request" },
        );
        const again = await audit.append(
          { type: "request", taskId: "acl-job", data: { prompt: "x" } },
          { fence: { key: lock, token: "token-1" }, once: "acme:acl-job:request" },
        );
        expect(again).toEqual({ ...first, duplicate: true });
        await expect(
          audit.append(
            { type: "request", taskId: "acl-job", data: { prompt: "x" } },
            { fence: { key: lock, token: "stale" } },
          ),
        ).rejects.toMatchObject({ code: "LOCK_LOST" });
        await w.del(lock);
      }
    });

    it("keda may only count every shard's wait list and prioritized set, with its scaler's script (infra/k8s/keda-scaledobject.yaml)", async () => {
      const keda = connect("keda");
      // KEDA's redis scaler counts a key by its type in one EVAL: one trigger per shard.
      const length = `local t = redis.call('type', KEYS[1]).ok
        if t == 'zset' then return redis.call('zcard', KEYS[1]) end
        return redis.call('llen', KEYS[1])`;
      // The shards of this deployment, and those of the other prefix shape (tagged or not).
      const other = prefix.startsWith("{") ? PREFIX : `{${PREFIX}}`;
      for (const p of [...shardKeys, ...shardPrefixes(other, 3), other]) {
        await expect(keda.eval(length, 1, `${p}:tasks:wait`)).resolves.toBeGreaterThanOrEqual(0);
        await expect(keda.eval(length, 1, `${p}:tasks:prioritized`)).resolves.toBeGreaterThanOrEqual(0);
        await expect(keda.llen(`${p}:tasks:wait`)).resolves.toBeGreaterThanOrEqual(0);
        await expect(keda.zcard(`${p}:tasks:prioritized`)).resolves.toBeGreaterThanOrEqual(0);
      }
      await expect(keda.lrange(`${S}:tasks:wait`, 0, -1)).rejects.toThrow(DENIED);
      await expect(keda.zrange(`${S}:tasks:prioritized`, 0, "-1")).rejects.toThrow(DENIED);
      await expect(keda.llen(`${S}:tasks:active`)).rejects.toThrow(DENIED);
      await expect(keda.get(`${S}:audit:head`)).rejects.toThrow(DENIED);
      await expect(keda.eval("return redis.call('del', KEYS[1])", 1, `${S}:tasks:wait`)).rejects.toThrow(
        DENIED,
      );
    });

    it("the auditor runs agentry audit archive: every chain out of Redis into files; no other role may trim, and it may not write", async () => {
      const auditor = connect("auditor");
      const key = "acl-test-archive-key-0123456789abcdefghij";
      const logs = chains.flatMap((chain) =>
        Array.from(
          { length: lanes },
          (_, lane) => new AuditLog({ redis: auditor, prefix: chain, lane, key }),
        ),
      );
      const heads = await Promise.all(logs.map((l) => l.readHead()));
      const out = join(dir, `archive-${shards}-${lanes}-${prefix}.jsonl`);
      const anchors = join(dir, `archive-anchors-${shards}-${lanes}-${prefix}.jsonl`);
      // The real CLI, as the auditor user.
      const cli = await execFileAsync(
        process.execPath,
        [
          "--conditions=@agentry/source",
          "--import",
          "tsx",
          "apps/admin/src/cli.ts",
          "audit",
          "archive",
          "--out",
          out,
          "--anchors",
          anchors,
          "--json",
        ],
        {
          cwd: repo,
          env: {
            ...process.env,
            REDIS_URL: urlFor("auditor"),
            AGENTRY_PREFIX: prefix,
            AGENTRY_SHARDS: String(shards),
            AGENTRY_AUDIT_LANES: String(lanes),
            AGENTRY_AUDIT_KEY: key,
            OTEL_EXPORTER_OTLP_ENDPOINT: "",
          },
        },
      );
      const archived = JSON.parse(cli.stdout) as {
        chains: { stream: string; file: string; appended: number; lastSeq: number }[];
      };
      expect(archived.chains.map((c) => c.stream)).toEqual(logs.map((l) => l.streamKey));
      for (const [i, log] of logs.entries()) {
        const head = heads[i] as { seq: number };
        const chain = archived.chains[i] as { file: string; lastSeq: number };
        // Everything up to the archived head left Redis and is in the chain's file.
        expect(chain.lastSeq).toBeGreaterThanOrEqual(head.seq);
        const [first] = await auditor.xrange(log.streamKey, "-", "+", "COUNT", 1);
        if (first) expect(Number(first[0].split("-")[0])).toBeGreaterThan(chain.lastSeq);
        if (head.seq > 0)
          expect(await verifyJsonl(chain.file)).toMatchObject({ ok: true, count: chain.lastSeq });
      }
      expect(await verifyChainsWithAnchors(logs, anchors)).toMatchObject({ ok: true });
      for (const role of ["producer", "worker", "admin"] as const)
        await expect(connect(role).xtrim(`${S}:audit`, "MINID", "0-1")).rejects.toThrow(/NOPERM/);
      await expect(auditor.del(`${S}:audit`)).rejects.toThrow(/NOPERM/);
      await expect(auditor.xadd(`${S}:audit`, "*", "e", "{}")).rejects.toThrow(/NOPERM/);
    });

    it("the worker, producer and admin hit no ACL denial beyond the ones provoked above", async () => {
      const inspector = connect(INSPECTOR);
      const log = (await inspector.call("ACL", "LOG", "128")) as unknown[][];
      const entries = log.map((raw) => {
        const e: Record<string, unknown> = {};
        for (let i = 0; i + 1 < raw.length; i += 2) e[String(raw[i])] = raw[i + 1];
        return { username: String(e.username), object: String(e.object), reason: String(e.reason) };
      });
      const provoked = new Set([
        // producer
        `producer ${S}:approval:forged`,
        `producer ${S}:approvals:resolved`,
        `producer ${S}:approvals:events`,
        `producer ${G}:budget:limit:global`,
        `producer ${S}:audit`,
        `producer ${S}:approvals:pending`,
        `producer ${S}:approvals:all`,
        // admin
        `admin ${S}:audit`,
        `admin ${S}:tasks:wait`,
        `admin ${S}:tasks:active`,
        `admin ${S}:tasks:id`,
        `admin ${S}:tasks:meta`,
        `admin ${S}:tasks:marker`,
        `admin ${S}:tasks:completed`,
        // the admin's submit, refused at the fair stamp (a shard's fair keys are read-only to it)
        `admin ${S}:fair:tenants`,
        `admin ${S}:fair:queue:tasks:clock`,
        // each of the admin clients' queues writes its meta once (BullMQ, refused and harmless)
        ...shardKeys.map((p) => `admin ${p}:tasks:meta`),
        `admin del`,
        `admin lmove`,
        // auditor
        `auditor ${S}:audit`,
        // worker
        `worker ${S}:audit`,
        `worker ${S}:audit:head`,
        `worker ${S}:audit:lane:1`,
        `worker ${S}:audit:lane:1:head`,
        // keda
        `keda lrange`,
        `keda zrange`,
        `keda ${S}:tasks:active`,
        `keda get`,
        `keda del`,
      ]);
      const dangerous = new Set(["flushall", "config|get", "keys", "script|flush"]);
      // The fixture's readiness probe runs INFO as the anonymous default user, which may only PING.
      const probe = (e: { username: string; object: string }) =>
        e.username === "default" && e.object === "info";
      const unexpected = entries.filter(
        (e) => !provoked.has(`${e.username} ${e.object}`) && !dangerous.has(e.object) && !probe(e),
      );
      expect(unexpected, JSON.stringify(entries, null, 1)).toEqual([]);
      expect(
        entries.filter(
          (e) =>
            e.username === "worker" &&
            ![`${S}:audit`, `${S}:audit:head`, `${S}:audit:lane:1`, `${S}:audit:lane:1:head`].includes(
              e.object,
            ) &&
            !dangerous.has(e.object),
        ),
      ).toEqual([]);
    });
  });
}

// One queue under the untagged prefix (as before sharding); three shards on one server
// (`agentry:s0..2`); three shards with the Cluster prefix (`{agentry-s<i>-<k>}`). The sharded
// deployments also write two audit lanes (the worker leases lane 1).
aclScenario(PREFIX, 1);
aclScenario(PREFIX, 3, 2);
aclScenario(`{${PREFIX}}`, 3, 2);
