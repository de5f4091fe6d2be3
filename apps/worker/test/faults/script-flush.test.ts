import { describe, expect, it } from "vitest";
import { demo, startFaultCluster, usePrivateRedis } from "./harness.js";

// Redis forgets its Lua scripts (SCRIPT FLUSH, or a restart behind a proxy that keeps client
// connections open) again and again while tasks run. Every connection goes on sending EVALSHA
// and meets NOSCRIPT, inside transactions too (a step commit riding with its audit entries): no
// task fails, nothing is written twice. A private server: flushing the shared one would reach
// other suites.

const redis = usePrivateRedis();

describe.each([
  { shards: 1, lanes: 1, allowances: 0 },
  { shards: 3, lanes: 3, allowances: 4 },
])(
  "script cache flushed under running tasks, AGENTRY_SHARDS=$shards, AGENTRY_AUDIT_LANES=$lanes, AGENTRY_BUDGET_ALLOWANCE_CALLS=$allowances",
  ({ shards, lanes, allowances }) => {
    it("completes every task once, runs each tool call once, and keeps every audit chain and the ledger exact", async () => {
      const server = await redis.start();
      const conn = server.connect();
      const flusher = server.connect();
      const cluster = redis.use(
        await startFaultCluster({
          redisUrl: server.url,
          prefix: `faults-flush-${shards}`,
          conn,
          shards,
          auditLanes: lanes,
          env: { AGENTRY_BUDGET_ALLOWANCE_CALLS: String(allowances) },
          reply: (req) => demo(req, { delayMs: 30 }),
        }),
      );
      const c = cluster;
      await Promise.all([c.startWorker("f1"), c.startWorker("f2")]);

      let flushes = 0;
      let flushing = true;
      const flushLoop = (async () => {
        while (flushing) {
          await flusher.script("FLUSH");
          flushes += 1;
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const tasks: string[] = [];
      const deletes: string[] = [];
      for (let i = 0; i < 12; i++) tasks.push(await c.submit(`What's the weather in Flush${i}?`));
      for (let i = 0; i < 4; i++) deletes.push(await c.submit(`delete db-${i} in staging`));
      const all = [...tasks, ...deletes];
      const outcomes = await Promise.all(
        all.map((id) =>
          c.client.wait(id, { timeoutMs: 120_000 }).then(
            () => "completed",
            (err: unknown) => `${id}: ${err instanceof Error ? err.message : String(err)}`,
          ),
        ),
      );
      flushing = false;
      await flushLoop;

      // Precondition: the cache was flushed many times while the tasks ran.
      expect(flushes).toBeGreaterThan(all.length);
      expect(outcomes.filter((o) => o !== "completed")).toEqual([]);
      // Each delete ran exactly once.
      expect((await c.deletions()).map((d) => d.taskId).sort()).toEqual([...deletes].sort());
      // One response per task in the audit, and every chain verifies.
      const responses = (await c.auditEntries()).filter((e) => e.type === "response");
      for (const id of all)
        expect(
          responses.filter((e) => e.taskId === id),
          `response entries of ${id}`,
        ).toHaveLength(1);
      for (const a of c.audits) expect(await a.verify(), a.streamKey).toMatchObject({ ok: true });
      // The ledger charged exactly what the provider billed, and holds nothing back.
      await expect
        .poll(async () => (await c.ledger.getStats("global")).reserved.tokens, { timeout: 30_000 })
        .toBe(0);
      expect((await c.ledger.getStats("global")).used.tokens).toBe(c.fake.billed().tokens);
    }, 200_000);
  },
);
