import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { AuditEntryInput } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AuditLog, anchorChains, archiveChains, verifyChainsWithAnchors, verifyJsonl } from "./audit-log.js";
import { AuditKeyring } from "./audit-key.js";
import { GENESIS_HASH } from "./entries.js";
import { storedHash } from "./stored.js";
import { expandRun } from "./stored.testing.js";

// Archiving moves a chain's entries out of Redis into a JSONL file, anchored first, and trims the
// stream through the archived point. What Redis keeps still verifies from that point, the file
// verifies on its own from seq 1, and entries dropped any other way are caught.

const redis = useTestRedis("gov-audit-archive");
const KEY = "a".repeat(16) + "-audit-key-for-archive-tests-01";
const dir = mkdtempSync(join(tmpdir(), "agentry-archive-"));
let n = 0;
const fresh = (what: string) => join(dir, `${what}-${++n}.jsonl`);

const entry = (i: number): AuditEntryInput => ({
  type: "action",
  taskId: `task-${i}`,
  data: { tool: "get_weather", input: { city: `c${i}` }, outcome: "ok" },
});

function chains(count: number): AuditLog[] {
  const client = redis.client();
  const base = redis.freshPrefix("archive");
  return Array.from(
    { length: count },
    (_, i) => new AuditLog({ redis: client, prefix: base, lane: i, key: KEY }),
  );
}

async function fill(log: AuditLog, count: number, from = 0): Promise<void> {
  for (let i = 0; i < count; i++) await log.append(entry(from + i));
}

const keys = new AuditKeyring({ key: KEY });

describe("audit archive", () => {
  it("archives a chain whose older entries are stored whole; entries after the trim link to the archived point", async () => {
    const [log] = chains(1) as [AuditLog];
    const client = redis.client();
    await fill(log, 3);
    // Entries 1-3 as a log written before entries were stored without seq, prevHash and hash.
    const lines = expandRun(await client.xrange(log.streamKey, "-", "+"), GENESIS_HASH);
    await client.del(log.streamKey);
    for (const [i, line] of lines.entries()) await client.xadd(log.streamKey, `${i + 1}-0`, "e", line);
    await fill(log, 2, 10);
    const before = await log.read();
    const file = fresh("mixed");
    expect(await archiveChains([log], [file], fresh("anchors"))).toMatchObject({
      ok: true,
      chains: [{ appended: 5, trimmed: 5, lastSeq: 5 }],
    });
    const archived = readFileSync(file, "utf8").trimEnd().split("\n");
    expect(archived.map((l) => JSON.parse(l) as unknown)).toEqual(before);
    expect(await verifyJsonl(file, { keys })).toMatchObject({ ok: true, count: 5, authenticated: true });

    await fill(log, 2, 20);
    const after = await log.read();
    expect(after.map((e) => [e.seq, e.prevHash])).toEqual([
      [6, before[4]?.hash],
      [7, after[0]?.hash],
    ]);
    expect(await log.tail(1)).toEqual(after.slice(1));
    expect(await log.verify()).toMatchObject({ ok: true, count: 2, lastSeq: 7 });
  });

  it("moves every chain's entries to its file, trims Redis, and both verify; later entries continue the chain", async () => {
    const logs = chains(2);
    await fill(logs[0] as AuditLog, 5);
    await fill(logs[1] as AuditLog, 3);
    const anchors = fresh("anchors");
    const files = [fresh("lane0"), fresh("lane1")];
    const archived = await archiveChains(logs, files, anchors);
    expect(archived).toMatchObject({
      ok: true,
      chains: [
        { stream: logs[0]?.streamKey, appended: 5, trimmed: 5, lastSeq: 5 },
        { stream: logs[1]?.streamKey, appended: 3, trimmed: 3, lastSeq: 3 },
      ],
    });
    // Redis holds nothing of them now; the head still links on.
    for (const log of logs) expect(await redis.client().xlen(log.streamKey)).toBe(0);
    const line = JSON.parse(readFileSync(anchors, "utf8").trim()) as { archived?: boolean };
    expect(line.archived).toBe(true);
    expect(await verifyChainsWithAnchors(logs, anchors)).toMatchObject({ ok: true, count: 0 });
    for (const [i, file] of files.entries())
      expect(await verifyJsonl(file, { keys })).toMatchObject({
        ok: true,
        count: [5, 3][i],
        authenticated: true,
      });

    // New entries link to the archived head; verify and anchor carry on from the archived point.
    await fill(logs[0] as AuditLog, 4, 100);
    expect(await (logs[0] as AuditLog).verify()).toMatchObject({ ok: true, count: 4, lastSeq: 9 });
    expect(await anchorChains(logs, anchors)).toMatchObject({
      ok: true,
      anchors: [{ seq: 9, verified: 4 }, { seq: 3 }],
    });
    expect(await verifyChainsWithAnchors(logs, anchors)).toMatchObject({ ok: true, count: 4 });

    // A second archive continues each file: the whole chain from seq 1 verifies on its own.
    await fill(logs[1] as AuditLog, 2, 200);
    expect(await archiveChains(logs, files, anchors)).toMatchObject({
      ok: true,
      chains: [
        { appended: 4, trimmed: 4, lastSeq: 9 },
        { appended: 2, trimmed: 2, lastSeq: 5 },
      ],
    });
    expect(await verifyJsonl(files[0] as string, { keys })).toMatchObject({ ok: true, count: 9 });
    expect(await verifyJsonl(files[1] as string, { keys })).toMatchObject({ ok: true, count: 5 });
    expect(await verifyChainsWithAnchors(logs, anchors)).toMatchObject({ ok: true });
    // The archived entries are readable from the file exactly as hashed.
    const lines = readFileSync(files[0] as string, "utf8")
      .trim()
      .split("\n");
    expect(lines.map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("keeps the entries written after the archive anchor, and finishes a run that stopped before its trim", async () => {
    const [log] = chains(1) as [AuditLog];
    await fill(log, 6);
    const anchors = fresh("anchors");
    const file = fresh("archive");
    // A run that anchored and wrote the file, then died before trimming.
    const anchored = await anchorChains([log], anchors, { archived: true });
    if (!anchored.ok) throw new Error("not anchored");
    await fill(log, 2, 50);
    const head = anchored.anchors[0] as { seq: number; hash: string };
    expect(await log.archiveTo(file, head)).toMatchObject({ appended: 6, trimmed: 6 });
    // Only the anchored entries left Redis: 7 and 8 stay.
    expect(await redis.client().xlen(log.streamKey)).toBe(2);
    expect(await log.verify()).toMatchObject({ ok: true, count: 2, lastSeq: 8 });
    // Repeating it writes nothing twice and trims nothing more.
    expect(await log.archiveTo(file, head)).toMatchObject({ appended: 0, trimmed: 0 });
    expect(await verifyJsonl(file, { keys })).toMatchObject({ ok: true, count: 6 });
  });

  it("refuses to archive a broken chain, and a file that does not continue the archive, trimming nothing", async () => {
    const [log] = chains(1) as [AuditLog];
    await fill(log, 4);
    const anchors = fresh("anchors");
    const file = fresh("archive");
    expect(await archiveChains([log], [file], anchors)).toMatchObject({ ok: true });
    await fill(log, 3, 10);
    // Another file than the one the chain was archived to: it cannot continue the chain.
    const other = fresh("other");
    await expect(archiveChains([log], [other], anchors)).rejects.toMatchObject({ code: "CONFLICT" });
    expect(await redis.client().xlen(log.streamKey)).toBe(3);
    // An entry deleted in Redis: the archive's verification refuses, nothing is written or trimmed.
    await redis.client().xdel(log.streamKey, "6-0");
    const refused = await archiveChains([log], [file], anchors);
    expect(refused).toMatchObject({ ok: false, firstBad: { seq: 6, reason: "seq-gap" } });
    expect(await redis.client().xlen(log.streamKey)).toBe(2);
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(4);
  });

  it("verifies every entry it archives, not only those since the last anchor", async () => {
    const [log] = chains(1) as [AuditLog];
    await fill(log, 6);
    const anchors = fresh("anchors");
    const file = fresh("archive");
    expect(await anchorChains([log], anchors)).toMatchObject({ ok: true, anchors: [{ seq: 6 }] });
    // Deleted after that anchor: anchoring again only walks what came since, but the archive
    // walks every entry it writes.
    await redis.client().xdel(log.streamKey, "3-0");
    await expect(archiveChains([log], [file], anchors)).rejects.toMatchObject({
      code: "CONFLICT",
      message: expect.stringContaining("seq-gap"),
    });
    expect(await redis.client().xlen(log.streamKey)).toBe(5);
    expect(await log.verify()).toMatchObject({ ok: false, firstBad: { seq: 3, reason: "seq-gap" } });
  });

  it("catches entries dropped without being archived, a base moved without trimming, and a trim past the archive", async () => {
    const [log] = chains(1) as [AuditLog];
    await fill(log, 5);
    const anchors = fresh("anchors");
    const file = fresh("archive");
    expect(await archiveChains([log], [file], anchors)).toMatchObject({ ok: true });
    await fill(log, 5, 20);
    expect(await anchorChains([log], anchors)).toMatchObject({ ok: true, anchors: [{ seq: 10 }] });
    await fill(log, 2, 40);
    const client = redis.client();
    const hashAt = async (seq: number) =>
      storedHash((await client.xrange(log.streamKey, `${seq}-0`, `${seq}-0`))[0]?.[1] ?? []) as string;

    const at10 = await hashAt(10);
    const at5 = (await client.hget(log.headKey, "baseHash")) as string;

    // A base moved ahead of entries still in the stream: they would go unchecked, so it is refused.
    await client.hset(log.headKey, "baseSeq", 10, "baseHash", at10);
    expect(await log.verify()).toMatchObject({ ok: false, firstBad: { seq: 10, reason: "base-mismatch" } });
    await client.hset(log.headKey, "baseSeq", 5, "baseHash", at5);
    expect(await verifyChainsWithAnchors([log], anchors)).toMatchObject({ ok: true, count: 7 });

    // Entries trimmed without moving the base: the first one left does not link to it.
    await client.xtrim(log.streamKey, "MINID", "8-0");
    expect(await log.verify()).toMatchObject({ ok: false, firstBad: { seq: 6, reason: "seq-gap" } });

    // Trimmed through seq 10 (a plain anchor, not an archive anchor) with the base moved there:
    // verify alone sees a consistent chain from there...
    await client.xtrim(log.streamKey, "MINID", "11-0");
    await client.hset(log.headKey, "baseSeq", 10, "baseHash", at10);
    expect(await log.verify()).toMatchObject({ ok: true, count: 2 });
    // ...but the anchors say seq 6 to 10 were never archived.
    expect(await verifyChainsWithAnchors([log], anchors)).toMatchObject({
      ok: false,
      firstBad: { seq: 10, reason: "base-mismatch" },
    });
    expect(await anchorChains([log], anchors)).toMatchObject({
      ok: false,
      firstBad: { reason: "base-mismatch" },
    });
  });

  it("trims only forward and only to the entry archived", async () => {
    const [log] = chains(1) as [AuditLog];
    await fill(log, 3);
    const file = fresh("archive");
    const anchors = fresh("anchors");
    const anchored = await anchorChains([log], anchors, { archived: true });
    if (!anchored.ok) throw new Error("not anchored");
    const head = anchored.anchors[0] as { seq: number; hash: string };
    await expect(log.archiveTo(file, { seq: 3, hash: "f".repeat(64) })).rejects.toMatchObject({
      code: "CONFLICT",
    });
    expect(await redis.client().xlen(log.streamKey)).toBe(3);
    // A file of something else is refused before anything is trimmed.
    const junk = fresh("junk");
    writeFileSync(junk, "not json\n");
    await expect(log.archiveTo(junk, head)).rejects.toMatchObject({ code: "CONFLICT" });
    expect(await log.archiveTo(file, head)).toMatchObject({ appended: 3, trimmed: 3 });
    expect(await log.verify()).toMatchObject({ ok: true, count: 0, lastSeq: 3 });
  });
});
