import { appendFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { AuditEntryInput } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AuditLog, anchorChains, verifyChainsWithAnchors } from "./audit-log.js";
import { idSeq, storedHash } from "./stored.js";

// A deployment with queue shards has several chains (the global one and one per shard): one
// anchor line holds every head, and anchors files of one chain, from before sharding, still verify.

const redis = useTestRedis("gov-anchor-chains");
const KEY = "c".repeat(16) + "-audit-key-for-chain-tests-0123";
const dir = mkdtempSync(join(tmpdir(), "agentry-chains-"));
let files = 0;
const anchorsFile = () => join(dir, `anchors-${++files}.jsonl`);

const entry = (i: number): AuditEntryInput => ({
  type: "action",
  taskId: `task-${i}`,
  data: { tool: "get_weather", input: { city: `c${i}` }, outcome: "ok" },
});

function chains(n: number): AuditLog[] {
  const client = redis.client();
  const base = redis.freshPrefix("chains");
  return Array.from(
    { length: n },
    (_, i) => new AuditLog({ redis: client, prefix: `${base}:s${i}`, key: KEY }),
  );
}

describe("anchors of several chains", () => {
  it("writes one line with every head, verifies every chain against it, and catches one chain rolled back", async () => {
    const logs = chains(3);
    for (const [i, log] of logs.entries()) for (let k = 0; k <= i; k++) await log.append(entry(k));
    const file = anchorsFile();
    const first = await anchorChains(logs, file);
    expect(first).toMatchObject({ ok: true, anchors: [{ seq: 1 }, { seq: 2 }, { seq: 3 }] });
    for (const log of logs) await log.append(entry(9));
    // The next anchor verifies only what each chain got since its head in the first line.
    expect(await anchorChains(logs, file)).toMatchObject({
      ok: true,
      anchors: [
        { seq: 2, verified: 1 },
        { seq: 3, verified: 1 },
        { seq: 4, verified: 1 },
      ],
    });
    const lines = readFileSync(file, "utf8").trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1] as string)).toMatchObject({
      v: 2,
      heads: logs.map((l) => ({ stream: l.streamKey })),
    });
    expect(await verifyChainsWithAnchors(logs, file)).toMatchObject({
      ok: true,
      count: 9,
      anchors: 6,
      chains: 3,
    });

    // Chain 1 loses its last entry and its head is set back: its anchor no longer matches.
    const log = logs[1] as AuditLog;
    const [top] = await log.redis.xrevrange(log.streamKey, "+", "-", "COUNT", 1);
    const [prev] = await log.redis.xrevrange(log.streamKey, "+", "-", "COUNT", 2).then((r) => r.slice(1));
    await log.redis.xdel(log.streamKey, (top as [string, string[]])[0]);
    const [prevId, prevFields] = prev as [string, string[]];
    await log.redis.hset(log.headKey, { seq: idSeq(prevId), hash: storedHash(prevFields) as string });
    expect(await verifyChainsWithAnchors(logs, file)).toMatchObject({
      ok: false,
      stream: log.streamKey,
      firstBad: { reason: expect.stringMatching(/anchor/) },
    });
    expect(await anchorChains(logs, file)).toMatchObject({ ok: false, stream: log.streamKey });
  });

  it("still verifies an anchors file of one chain written before the queue was sharded", async () => {
    const [global, ...shards] = chains(3);
    const base = global as AuditLog;
    for (let i = 0; i < 3; i++) await base.append(entry(i));
    const file = anchorsFile();
    // One chain: the single-chain line, as before.
    expect(await base.anchor(file)).toMatchObject({ ok: true, anchor: { seq: 3 } });
    expect(JSON.parse(readFileSync(file, "utf8").trim())).toMatchObject({
      v: 1,
      stream: base.streamKey,
      seq: 3,
    });
    expect(await base.verifyWithAnchors(file)).toMatchObject({ ok: true, anchors: 1 });
    // Sharded since: the new shards' chains are verified without anchors and named as such.
    for (const log of shards) await log.append(entry(7));
    expect(await verifyChainsWithAnchors([base, ...shards], file)).toMatchObject({
      ok: true,
      count: 5,
      unanchored: shards.map((l) => l.streamKey),
    });
    // The next anchor covers all three, after the old line.
    expect(await anchorChains([base, ...shards], file)).toMatchObject({ ok: true });
    expect(await verifyChainsWithAnchors([base, ...shards], file)).toMatchObject({
      ok: true,
      unanchored: [],
    });
    // A file naming none of the chains proves nothing.
    const other = anchorsFile();
    appendFileSync(other, "");
    expect(await verifyChainsWithAnchors(shards, other)).toMatchObject({
      ok: false,
      firstBad: { reason: "bad-anchor" },
    });
  });

  it("refuses an edited line of several heads", async () => {
    const logs = chains(2);
    for (const log of logs) await log.append(entry(1));
    const file = anchorsFile();
    expect(await anchorChains(logs, file)).toMatchObject({ ok: true });
    const line = JSON.parse(readFileSync(file, "utf8").trim()) as { heads: { seq: number }[] };
    (line.heads[0] as { seq: number }).seq = 0;
    appendFileSync(file, `${JSON.stringify(line)}\n`);
    expect(await verifyChainsWithAnchors(logs, file)).toMatchObject({
      ok: false,
      firstBad: { reason: "bad-anchor", id: "anchors line 2" },
    });
  });
});
