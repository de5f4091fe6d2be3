import { describe, expect, it } from "vitest";
import { AgentryError, createLogger, type AuditEntryInput } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { acquireAuditLane } from "./audit-lane.js";
import { AuditLog } from "./audit-log.js";

const redis = useTestRedis("gov-audit-lanes");

const entry = (i: number): AuditEntryInput => ({
  type: "action",
  taskId: `task-${i}`,
  tenant: "acme",
  data: { tool: "get_weather", input: { city: `c${i}` }, outcome: "ok" },
});

describe("audit lanes", () => {
  it("keep lane 0 on the keys of a log without lanes, and write each lane as a chain of its own", async () => {
    const prefix = redis.freshPrefix("lanes");
    const client = redis.client();
    const plain = new AuditLog({ redis: client, prefix });
    const zero = new AuditLog({ redis: client, prefix, lane: 0 });
    const two = new AuditLog({ redis: client, prefix, lane: 2 });
    expect([zero.streamKey, zero.headKey]).toEqual([plain.streamKey, plain.headKey]);
    expect([two.streamKey, two.headKey]).toEqual([`${prefix}:audit:lane:2`, `${prefix}:audit:lane:2:head`]);
    // Interleaved writers on two lanes never meet: each chain counts from seq 1 and verifies.
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? zero : two).append(entry(i))));
    for (const log of [zero, two]) {
      expect(await log.verify()).toMatchObject({ ok: true, count: 10, lastSeq: 10 });
      expect((await log.read()).map((e) => e.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    }
    // A once id is shared by every lane: the same append on another lane is a duplicate.
    const first = await zero.append(entry(100), { once: "request:task-100" });
    const again = await two.append(entry(100), { once: "request:task-100" });
    expect(again).toMatchObject({ duplicate: true, seq: first.seq });
    expect(() => new AuditLog({ redis: client, prefix, lane: 64 })).toThrow(AgentryError);
    expect(() => new AuditLog({ redis: client, prefix, lane: -1 })).toThrow(/audit lane/);
  });

  it("lease lanes 1 … n−1 first, then 0, then share one and say so", async () => {
    const prefix = redis.freshPrefix("lease");
    const client = redis.client();
    const lines: string[] = [];
    const logger = createLogger({
      name: "test",
      level: "warn",
      destination: { write: (l: string) => void lines.push(l) },
    });
    const leases = [];
    for (let i = 0; i < 3; i++)
      leases.push(await acquireAuditLane({ redis: client, prefix, lanes: 3, owner: `w${i}`, logger }));
    expect(leases.map((l) => l.lane)).toEqual([1, 2, 0]);
    expect(await client.get(`${prefix}:audit:lane:1:owner`)).toBe("w0");
    const shared = await acquireAuditLane({ redis: client, prefix, lanes: 3, owner: "w3", logger });
    expect([0, 1, 2]).toContain(shared.lane);
    expect(lines.join("")).toContain("audit-lane-shared");
    // Releasing frees the lane for the next process; a release by a non-owner frees nothing.
    await shared.release();
    expect(await client.get(`${prefix}:audit:lane:1:owner`)).toBe("w0");
    await leases[0]?.release();
    expect(await client.exists(`${prefix}:audit:lane:1:owner`)).toBe(0);
    const next = await acquireAuditLane({ redis: client, prefix, lanes: 3, owner: "w4" });
    expect(next.lane).toBe(1);
    for (const l of [next, ...leases.slice(1)]) await l.release();
    // One lane: lane 0, nothing written.
    expect((await acquireAuditLane({ redis: client, prefix, lanes: 1 })).lane).toBe(0);
    expect(await client.keys(`${prefix}:*`)).toEqual([]);
    await expect(acquireAuditLane({ redis: client, prefix, lanes: 65 })).rejects.toThrow(
      /AGENTRY_AUDIT_LANES/,
    );
  });

  it("renew while held, and a crashed holder's lane is taken over when its lease runs out", async () => {
    const prefix = redis.freshPrefix("expiry");
    const client = redis.client();
    const held = await acquireAuditLane({ redis: client, prefix, lanes: 2, owner: "alive", leaseMs: 3_000 });
    expect(held.lane).toBe(1);
    // Renewed every second: its time to live runs down, then is set back while it is still held.
    const key = `${prefix}:audit:lane:1:owner`;
    await expect.poll(() => client.pttl(key), { timeout: 10_000, interval: 20 }).toBeLessThan(2_500);
    await expect.poll(() => client.pttl(key), { timeout: 10_000, interval: 20 }).toBeGreaterThan(2_500);
    expect(await client.get(key)).toBe("alive");
    await held.release();
    // A holder that died without releasing: its key lapses, then the lane is free again.
    await client.set(`${prefix}:audit:lane:1:owner`, "crashed", "PX", 200);
    const meanwhile = await acquireAuditLane({ redis: client, prefix, lanes: 2, owner: "w1" });
    expect(meanwhile.lane).toBe(0);
    await expect.poll(() => client.exists(`${prefix}:audit:lane:1:owner`)).toBe(0);
    const after = await acquireAuditLane({ redis: client, prefix, lanes: 2, owner: "w2" });
    expect(after.lane).toBe(1);
    await Promise.all([meanwhile.release(), after.release()]);
  });
});
