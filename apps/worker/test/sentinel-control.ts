import { expect, vi } from "vitest";
import { Redis } from "ioredis";
import type { TestRedisSentinel } from "@agentry/testkit";

/** Asks one server or Sentinel something on a short-lived connection. */
export async function ask<T>(port: number, question: (conn: Redis) => Promise<T>): Promise<T> {
  const conn = new Redis({ host: "127.0.0.1", port, retryStrategy: () => null, maxRetriesPerRequest: 1 });
  conn.on("error", () => undefined);
  try {
    return await question(conn);
  } finally {
    conn.disconnect();
  }
}

/**
 * Resolves once a failover away from the master on `from` has settled: every Sentinel names the
 * same new master, and each other data node that answers (the old master too, should it be back)
 * follows it with its link up. Meanwhile a replica is resynced from the new master, and a
 * Sentinel late to the news could start a failover of its own.
 */
export async function failedOver(sentinel: TestRedisSentinel, from: number): Promise<number> {
  let master = 0;
  await vi.waitFor(
    async () => {
      const named = await Promise.all(
        sentinel.sentinels.map((s) =>
          ask(
            s,
            (conn) => conn.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.name) as Promise<string[]>,
          ),
        ),
      );
      const masters = new Set(named.map((addr) => Number(addr[1])));
      expect(masters.size).toBe(1);
      [master] = [...masters] as [number];
      expect(master).not.toBe(from);
      expect(await ask(master, (conn) => conn.info("replication"))).toMatch(/^role:master/m);
      for (const node of sentinel.nodes.filter((n) => n !== master)) {
        const info = await ask(node, (conn) => conn.info("replication")).catch(() => "");
        if (info === "") continue; // killed
        expect(info).toMatch(new RegExp(`^master_port:${master}\\s*$`, "m"));
        expect(info).toMatch(/^master_link_status:up/m);
      }
    },
    { timeout: 90_000, interval: 200 },
  );
  return master;
}
