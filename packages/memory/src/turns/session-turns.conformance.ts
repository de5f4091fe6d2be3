import { sleep } from "@agentry/core";
import { describe, expect, it } from "vitest";
import type { SessionLease, SessionTurns } from "./session-turns.js";

/**
 * Makes a fresh, empty store. `connect()` opens one more client onto the same store, as
 * another worker would (a new Redis connection; the same object for in-memory).
 */
export type SessionTurnsFactory = () => Promise<{ connect(): SessionTurns }>;

const LONG_MS = 30_000;

/** Polls until `acquire` returns a lease (the holder's lease must run out first). */
async function waitFor(
  acquire: () => Promise<SessionLease | null>,
  deadlineMs = 10_000,
): Promise<SessionLease> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const lease = await acquire();
    if (lease) return lease;
    if (Date.now() > deadline) throw new Error("turn never became available");
    await sleep(10);
  }
}

/** The {@link SessionTurns} contract. Every backend runs it. */
export function sessionTurnsConformance(name: string, factory: SessionTurnsFactory): void {
  describe(`SessionTurns conformance: ${name}`, () => {
    it("grants the turn only to the head of the order, in enqueue order", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      await turns.enqueue("s", "t2");
      expect(await turns.head("s")).toBe("t1");
      expect(await turns.tryAcquire("s", "t2", LONG_MS)).toBeNull();
      const lease = await turns.tryAcquire("s", "t1", LONG_MS);
      expect(lease).toMatchObject({ sessionId: "s", taskId: "t1" });
      expect(lease?.token).toBeTruthy();
      expect(await turns.tryAcquire("s", "t2", LONG_MS)).toBeNull();
      await turns.release(lease as SessionLease);
      expect(await turns.head("s")).toBe("t2");
      const next = await turns.tryAcquire("s", "t2", LONG_MS);
      expect(next?.taskId).toBe("t2");
      await turns.release(next as SessionLease);
      expect(await turns.head("s")).toBeNull();
    });

    it("enqueue is idempotent per task id", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      await turns.enqueue("s", "t2");
      await turns.enqueue("s", "t1");
      const lease = await turns.tryAcquire("s", "t1", LONG_MS);
      await turns.release(lease as SessionLease);
      expect(await turns.head("s")).toBe("t2");
      await turns.remove("s", "t2");
      expect(await turns.head("s")).toBeNull();
    });

    it("a second acquire while the lease is live is refused, even for the same task", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      expect(await turns.tryAcquire("s", "t1", LONG_MS)).not.toBeNull();
      expect(await turns.tryAcquire("s", "t1", LONG_MS)).toBeNull();
    });

    it("sessions are independent", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("tenant:a:s1", "t1");
      await turns.enqueue("tenant:a:s2", "t2");
      expect(await turns.tryAcquire("tenant:a:s1", "t1", LONG_MS)).not.toBeNull();
      expect(await turns.tryAcquire("tenant:a:s2", "t2", LONG_MS)).not.toBeNull();
    });

    it("when the holder dies its lease expires: the same task re-takes the turn, the next one still waits", async () => {
      const store = await factory();
      const dead = store.connect();
      const other = store.connect();
      await dead.enqueue("s", "t1");
      await dead.enqueue("s", "t2");
      const first = await dead.tryAcquire("s", "t1", 60);
      expect(first).not.toBeNull();
      // The holder "dies": it never renews or releases.
      const retaken = await waitFor(() => other.tryAcquire("s", "t1", LONG_MS));
      expect(retaken.taskId).toBe("t1");
      expect(retaken.token).not.toBe(first?.token);
      expect(await other.tryAcquire("s", "t2", LONG_MS)).toBeNull();
      // The dead holder's late calls change nothing.
      expect(await dead.renew(first as SessionLease, LONG_MS)).toBe(false);
      await dead.release(first as SessionLease);
      expect(await other.head("s")).toBe("t1");
      expect(await other.tryAcquire("s", "t2", LONG_MS)).toBeNull();
      await other.release(retaken);
      expect((await other.tryAcquire("s", "t2", LONG_MS))?.taskId).toBe("t2");
    });

    it("a late release by a holder whose lease ran out (and no one re-took) ends the turn", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      await turns.enqueue("s", "t2");
      const lease = await turns.tryAcquire("s", "t1", 30);
      await sleep(150); // well past the lease's expiry
      await turns.release(lease as SessionLease);
      expect(await turns.head("s")).toBe("t2");
    });

    it("renew extends a held lease and fails once it is lost", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      const lease = (await turns.tryAcquire("s", "t1", 200)) as SessionLease;
      const before = lease.expiresAt;
      expect(await turns.renew(lease, LONG_MS)).toBe(true);
      expect(lease.expiresAt).toBeGreaterThan(before);
      await turns.release(lease);
      expect(await turns.renew(lease, LONG_MS)).toBe(false);
    });

    it("removing a parked task with endTurn ends the turn it holds: the next task takes it at once", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      await turns.enqueue("s", "t2");
      expect(await turns.tryAcquire("s", "t1", LONG_MS)).not.toBeNull();
      await turns.remove("s", "t1", { endTurn: true }); // t1 was cancelled while parked, holding the turn
      expect(await turns.head("s")).toBe("t2");
      expect(await turns.tryAcquire("s", "t2", LONG_MS)).not.toBeNull();
      // Removing a task that does not hold the turn leaves the holder's lease alone.
      await turns.enqueue("s", "t3");
      await turns.remove("s", "t3", { endTurn: true });
      expect(await turns.tryAcquire("s", "t2", LONG_MS)).toBeNull(); // still held by t2
    });

    it("release is idempotent", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      await turns.enqueue("s", "t2");
      const lease = (await turns.tryAcquire("s", "t1", LONG_MS)) as SessionLease;
      await turns.release(lease);
      await turns.release(lease);
      const next = (await turns.tryAcquire("s", "t2", LONG_MS)) as SessionLease;
      // A repeated release of t1 must not disturb t2's turn.
      await turns.release(lease);
      expect(await turns.head("s")).toBe("t2");
      expect(await turns.tryAcquire("s", "t2", LONG_MS)).toBeNull();
      expect(await turns.renew(next, LONG_MS)).toBe(true);
    });

    it("a release with the wrong token does not release", async () => {
      const turns = (await factory()).connect();
      await turns.enqueue("s", "t1");
      await turns.enqueue("s", "t2");
      const lease = (await turns.tryAcquire("s", "t1", LONG_MS)) as SessionLease;
      await turns.release({ ...lease, token: "not-the-token" });
      expect(await turns.head("s")).toBe("t1");
      expect(await turns.tryAcquire("s", "t2", LONG_MS)).toBeNull();
      expect(await turns.renew(lease, LONG_MS)).toBe(true);
      expect(await turns.renew({ ...lease, token: "not-the-token" }, LONG_MS)).toBe(false);
    });

    it("remove drops a task that never ran; a removed running task keeps its lease until release", async () => {
      const turns = (await factory()).connect();
      for (const t of ["t1", "t2", "t3"]) await turns.enqueue("s", t);
      await turns.remove("s", "t2");
      const l1 = (await turns.tryAcquire("s", "t1", LONG_MS)) as SessionLease;
      await turns.remove("s", "t1"); // cancelled while running
      expect(await turns.head("s")).toBe("t3");
      expect(await turns.tryAcquire("s", "t3", LONG_MS)).toBeNull();
      await turns.release(l1);
      expect((await turns.tryAcquire("s", "t3", LONG_MS))?.taskId).toBe("t3");
    });

    it("rejects empty ids and non-positive ttl with INVALID_INPUT", async () => {
      const turns = (await factory()).connect();
      await expect(turns.enqueue("", "t")).rejects.toMatchObject({ code: "INVALID_INPUT" });
      await expect(turns.enqueue("s", "")).rejects.toMatchObject({ code: "INVALID_INPUT" });
      await expect(turns.tryAcquire("s", "t", 0)).rejects.toMatchObject({ code: "INVALID_INPUT" });
    });

    it("several clients racing get turns strictly one at a time, in enqueue order", async () => {
      const store = await factory();
      const clients = Array.from({ length: 4 }, () => store.connect());
      const tasks = Array.from({ length: 10 }, (_, i) => `task-${(i * 7919) % 101}`);
      for (const t of tasks) await (clients[0] as SessionTurns).enqueue("race", t);
      const events: string[] = [];
      const done = new Set<string>();
      await Promise.all(
        clients.map(async (client) => {
          while (done.size < tasks.length) {
            const pending = tasks.filter((t) => !done.has(t));
            const pick = pending[Math.floor(Math.random() * pending.length)] as string;
            const lease = await client.tryAcquire("race", pick, LONG_MS);
            if (!lease) {
              await sleep(1);
              continue;
            }
            events.push(`start:${pick}`);
            await sleep(Math.random() * 3);
            events.push(`end:${pick}`);
            done.add(pick);
            await client.release(lease);
          }
        }),
      );
      expect(events).toEqual(tasks.flatMap((t) => [`start:${t}`, `end:${t}`]));
    });
  });
}
