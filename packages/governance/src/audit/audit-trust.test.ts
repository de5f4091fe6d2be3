import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { AgentryError, type AuditEntryInput } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AuditKeyring } from "./audit-key.js";
import { AuditLog, verifyJsonl } from "./audit-log.js";
import { entryHash } from "./chain.js";
import { GENESIS_HASH, type AuditEntry } from "./entries.js";
import { expandRun, storedFieldsOf } from "./stored.testing.js";

// The attacks an operator worries about, made the way someone with Redis write access (but
// without AGENTRY_AUDIT_KEY) would make them, and what `verify` and anchors say about each.

const run = promisify(execFile);
const redis = useTestRedis("gov-audit-trust");
const KEY = "k".repeat(16) + "-audit-key-for-tests-0123456789";
const OTHER_KEY = "o".repeat(16) + "-another-audit-key-for-tests-42";
const dir = mkdtempSync(join(tmpdir(), "agentry-anchors-"));
let files = 0;
const anchorsFile = () => join(dir, `anchors-${++files}.jsonl`);

function newLog(options: { key?: string; previousKeys?: string[]; prefix?: string } = {}) {
  const prefix = options.prefix ?? redis.freshPrefix("audit");
  const client = redis.client();
  const log = new AuditLog({ redis: client, prefix, ...options });
  return {
    log,
    client,
    prefix,
    reopen: (o: { key?: string; previousKeys?: string[] } = {}) =>
      new AuditLog({ redis: client, prefix, ...o }),
  };
}
type Ctx = ReturnType<typeof newLog>;

const entry = (i: number, taskId = "task-1"): AuditEntryInput => ({
  type: "action",
  taskId,
  tenant: "acme",
  data: { tool: "get_weather", input: { city: `c${i}` }, outcome: "ok", output: { i } },
});

async function filled(n: number, options: { key?: string } = { key: KEY }) {
  const ctx = newLog(options);
  for (let i = 1; i <= n; i++) await ctx.log.append(entry(i, i % 3 === 0 ? "task-victim" : "task-other"));
  return ctx;
}

async function raw(ctx: Ctx): Promise<AuditEntry[]> {
  return expandRun(await ctx.client.xrange(ctx.log.streamKey, "-", "+"), GENESIS_HASH).map(
    (line) => JSON.parse(line) as AuditEntry,
  );
}

/** Replaces the stream and the head, as an attacker with Redis access could (ids `<seq>-0`). */
async function rewrite(ctx: Ctx, entries: AuditEntry[]) {
  await ctx.client.del(ctx.log.streamKey, ctx.log.headKey);
  for (const e of entries)
    await ctx.client.xadd(ctx.log.streamKey, `${e.seq}-0`, ...storedFieldsOf(JSON.stringify(e)));
  const last = entries.at(-1);
  if (last) await ctx.client.hset(ctx.log.headKey, "seq", last.seq, "hash", last.hash);
}

/**
 * Keeps the first `keep` entries and re-links the rest with plain SHA-256, renumbering them:
 * all a forger without the key can do.
 */
function rehash(entries: AuditEntry[], keep = 0): AuditEntry[] {
  const out: AuditEntry[] = entries.slice(0, keep);
  for (const e of entries.slice(keep)) {
    const prev = out.at(-1);
    const { kid: _kid, hash: _hash, ...rest } = e;
    const next = { ...rest, seq: out.length + 1, prevHash: prev?.hash ?? "0".repeat(64) } as AuditEntry;
    next.hash = entryHash(next);
    out.push(next);
  }
  return out;
}

async function anchored(ctx: Ctx, path = anchorsFile()) {
  const result = await ctx.log.anchor(path);
  expect(result.ok).toBe(true);
  return path;
}

describe("authenticated audit log (AGENTRY_AUDIT_KEY)", () => {
  it("links every entry with an HMAC under the key; verify reports the chain authenticated", async () => {
    const ctx = await filled(4);
    const entries = await raw(ctx);
    const kid = ctx.log.keys.current?.kid;
    expect(kid).toMatch(/^[0-9a-f]{16}$/);
    for (const e of entries) {
      expect(e.kid).toBe(kid);
      expect(e.hash).toBe(entryHash(e, ctx.log.keys.current));
      expect(e.hash).not.toBe(entryHash(e));
    }
    expect(JSON.stringify(entries)).not.toContain(KEY);
    expect(await ctx.log.verify()).toMatchObject({ ok: true, count: 4, authenticated: true, unchecked: 0 });
  });

  it("attack: a forged entry appended with a recomputed plain hash (head moved too) is unauthenticated", async () => {
    const ctx = await filled(3);
    const entries = await raw(ctx);
    const last = entries.at(-1) as AuditEntry;
    const { kid: _kid, ...plain } = {
      ...last,
      seq: 4,
      prevHash: last.hash,
      type: "response",
      data: { text: "nothing was deleted" },
    } as AuditEntry;
    const forged = { ...plain, hash: entryHash(plain as AuditEntry) } as AuditEntry;
    await rewrite(ctx, [...entries, forged]);
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      count: 3,
      firstBad: { seq: 4, id: "4-0", reason: "unauthenticated" },
    });

    // Claiming the key's id does not help: the MAC cannot be made without the key.
    const withKid = { ...forged, kid: last.kid } as AuditEntry;
    withKid.hash = entryHash(withKid);
    await rewrite(ctx, [...entries, withKid]);
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      firstBad: { seq: 4, reason: "hash-mismatch" },
    });

    // Without moving the head, the forged entry sits beyond it and is named too.
    await rewrite(ctx, entries);
    await ctx.client.xadd(ctx.log.streamKey, "4-0", "e", JSON.stringify(withKid));
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      count: 3,
      firstBad: { seq: 4, reason: "beyond-head" },
    });
  });

  it("attack: one task's entries removed and the rest re-hashed is detected by the key, and by anchors without it", async () => {
    const ctx = await filled(7);
    const entries = await raw(ctx);
    const kept = entries.filter((e) => e.taskId !== "task-victim");
    await rewrite(ctx, rehash(kept, 2));
    // Entries 1 and 2 survive untouched; the first re-hashed one carries no MAC.
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      count: 2,
      firstBad: { seq: 3, reason: "unauthenticated" },
    });

    // A log without a key cannot tell, but an anchor taken by a key holder can.
    const plain = await filled(7, {});
    const path = anchorsFile();
    const anchorer = plain.reopen({ key: KEY });
    expect(await anchorer.anchor(path)).toMatchObject({ ok: true, anchor: { seq: 7 } });
    await rewrite(plain, rehash((await raw(plain)).filter((e) => e.taskId !== "task-victim")));
    expect(await plain.log.verify()).toMatchObject({ ok: true, count: 5, authenticated: false });
    expect(await anchorer.verifyWithAnchors(path)).toMatchObject({
      ok: false,
      firstBad: { seq: 7, reason: "anchor-beyond-head" },
    });
  });

  it("attack: the last entries deleted and the head reset pass a plain verify but not the anchors", async () => {
    const ctx = await filled(6);
    const path = await anchored(ctx);
    const entries = await raw(ctx);
    await rewrite(ctx, entries.slice(0, 4));
    expect(await ctx.log.verify()).toMatchObject({ ok: true, count: 4 });
    expect(await ctx.log.verifyWithAnchors(path)).toMatchObject({
      ok: false,
      firstBad: {
        seq: 6,
        reason: "anchor-beyond-head",
        detail: expect.stringContaining("the log ends at seq 4"),
      },
    });
  });

  it("attack: the whole log and its head deleted contradict every anchor", async () => {
    const ctx = await filled(3);
    const path = await anchored(ctx);
    await ctx.client.del(ctx.log.streamKey, ctx.log.headKey);
    expect(await ctx.log.verify()).toMatchObject({ ok: true, count: 0 });
    expect(await ctx.log.verifyWithAnchors(path)).toMatchObject({
      ok: false,
      firstBad: { seq: 3, reason: "anchor-beyond-head" },
    });
    // Nor can a fresh anchor paper over it: anchor refuses a log that lost anchored entries.
    expect(await ctx.log.anchor(path)).toMatchObject({
      ok: false,
      firstBad: { reason: "anchor-beyond-head" },
    });
  });

  it("attack: an anchored entry replaced (same length, re-linked by a key holder's copy) is an anchor-mismatch", async () => {
    // A chain under the same key with different content (e.g. a staging log) swapped in wholesale.
    const ctx = await filled(3);
    const path = await anchored(ctx);
    const impostor = newLog({ key: KEY });
    for (let i = 1; i <= 3; i++) await impostor.log.append(entry(100 + i));
    await rewrite(ctx, await raw(impostor));
    expect(await ctx.log.verify()).toMatchObject({ ok: true, count: 3, authenticated: true });
    expect(await ctx.log.verifyWithAnchors(path)).toMatchObject({
      ok: false,
      firstBad: { seq: 3, reason: "anchor-mismatch" },
    });
  });

  it("verify with a wrong key names the first entry; without a key it reports the chain unauthenticated", async () => {
    const ctx = await filled(3);
    expect(await ctx.reopen({ key: OTHER_KEY }).verify()).toMatchObject({
      ok: false,
      count: 0,
      firstBad: { seq: 1, reason: "unknown-key" },
    });
    expect(await ctx.reopen().verify()).toMatchObject({
      ok: true,
      count: 3,
      authenticated: false,
      unchecked: 3,
    });
    // Without the key nothing of an entry with a MAC can be checked, its link included (the
    // link is the MAC's input): damage shows only to a verify with the key.
    const entries = await raw(ctx);
    await rewrite(
      ctx,
      entries.map((e, i) => (i === 0 ? { ...e, hash: "0".repeat(64) } : e)),
    );
    expect(await ctx.reopen().verify()).toMatchObject({ ok: true, authenticated: false, unchecked: 3 });
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      firstBad: { seq: 1, reason: "hash-mismatch" },
    });
  });

  it("key rotation: entries under a retired key verify when it is listed in previousKeys", async () => {
    const ctx = await filled(2, { key: OTHER_KEY });
    const rotated = ctx.reopen({ key: KEY });
    await rotated.append(entry(3));
    expect(await rotated.verify()).toMatchObject({ ok: false, firstBad: { seq: 1, reason: "unknown-key" } });
    const withOld = ctx.reopen({ key: KEY, previousKeys: [OTHER_KEY] });
    expect(await withOld.verify()).toMatchObject({ ok: true, count: 3, authenticated: true });
  });

  it("a log written before the key: unauthenticated until the first anchor vouches for it; later plain entries never pass", async () => {
    const ctx = await filled(3, {});
    const keyed = ctx.reopen({ key: KEY });
    await keyed.append(entry(4));
    expect(await keyed.verify()).toMatchObject({
      ok: false,
      firstBad: { seq: 1, reason: "unauthenticated" },
    });
    const path = anchorsFile();
    expect(await keyed.anchor(path)).toMatchObject({ ok: true, anchor: { seq: 4, verified: 4 } });
    expect(await keyed.verifyWithAnchors(path)).toMatchObject({
      ok: true,
      count: 4,
      authenticated: true,
      anchors: 1,
    });

    // A writer without the key appends after keyed entries: refused by anchor and by verify.
    await ctx.log.append(entry(5));
    expect(await keyed.anchor(path)).toMatchObject({
      ok: false,
      firstBad: { seq: 5, reason: "unauthenticated" },
    });
    expect(await keyed.verifyWithAnchors(path)).toMatchObject({
      ok: false,
      firstBad: { seq: 5, reason: "unauthenticated" },
    });
    expect(readFileSync(path, "utf8").trim().split("\n")).toHaveLength(1);
  });

  it("anchors: each run appends one authenticated line; a forged or edited line is refused", async () => {
    const ctx = await filled(2);
    const path = await anchored(ctx);
    await ctx.log.append(entry(3));
    expect(await ctx.log.anchor(path)).toMatchObject({ ok: true, anchor: { seq: 3, verified: 1 } });
    const lines = readFileSync(path, "utf8").trim().split("\n");
    expect(lines.map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([2, 3]);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      kind: "agentry-audit-anchor",
      stream: ctx.log.streamKey,
      kid: ctx.log.keys.current?.kid,
    });
    expect(await ctx.log.verifyWithAnchors(path)).toMatchObject({ ok: true, count: 3, anchors: 2 });

    // Someone lowers an anchor to match a truncated log: the line's MAC no longer holds.
    const lowered = lines.map((l, i) => (i === 1 ? l.replace('"seq":3', '"seq":2') : l));
    writeFileSync(path, `${lowered.join("\n")}\n`);
    expect(await ctx.log.verifyWithAnchors(path)).toMatchObject({
      ok: false,
      firstBad: { id: "anchors line 2", reason: "bad-anchor" },
    });
    expect(await ctx.log.anchor(path)).toMatchObject({ ok: false, firstBad: { reason: "bad-anchor" } });

    // An anchors file of another log is no evidence about this one.
    const other = await filled(1);
    expect(await other.log.verifyWithAnchors(await anchored(ctx))).toMatchObject({
      ok: false,
      firstBad: { reason: "bad-anchor", detail: expect.stringContaining("no anchor of") },
    });
  });

  it("anchor needs the key", async () => {
    const ctx = await filled(1, {});
    const err = await ctx.log.anchor(anchorsFile()).catch((e: unknown) => e);
    expect(AgentryError.isInstance(err) && err.code).toBe("INVALID_CONFIG");
  });

  it("a JSONL export verifies with the key, and a forged plain line in it is unauthenticated", async () => {
    const ctx = await filled(3);
    const file = join(dir, `export-${++files}.jsonl`);
    await ctx.log.exportJsonl(file);
    const keys = new AuditKeyring({ key: KEY });
    expect(await verifyJsonl(file, { keys })).toMatchObject({ ok: true, count: 3, authenticated: true });
    const lines = readFileSync(file, "utf8").trim().split("\n");
    writeFileSync(
      file,
      `${rehash(lines.map((l) => JSON.parse(l) as AuditEntry))
        .map((e) => JSON.stringify(e))
        .join("\n")}\n`,
    );
    expect(await verifyJsonl(file)).toMatchObject({ ok: true, count: 3 });
    expect(await verifyJsonl(file, { keys })).toMatchObject({
      ok: false,
      firstBad: { seq: 1, reason: "unauthenticated" },
    });
  });

  it("verify while another process appends: never a false failure", async () => {
    const ctx = newLog({ key: KEY });
    const stopKey = `${ctx.prefix}:stop`;
    const child = spawn(
      process.execPath,
      [
        "--conditions=@agentry/source",
        "--import",
        "tsx",
        new URL("./append-child.fixture.ts", import.meta.url).pathname,
      ],
      {
        env: {
          ...process.env,
          REDIS_URL: redis.url,
          PREFIX: ctx.prefix,
          WORKER: "w-bg",
          KEY,
          STOP_KEY: stopKey,
        },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    try {
      while ((await ctx.log.readHead()).seq < 20) await new Promise((r) => setTimeout(r, 20));
      // Until three verifies had the head move under them (appends landed mid-walk).
      let overlapped = 0;
      for (let i = 0; i < 500 && overlapped < 3; i++) {
        const result = await ctx.log.verify();
        expect(result).toMatchObject({ ok: true, authenticated: true });
        if ((await ctx.log.readHead()).seq > (result.ok ? result.lastSeq : 0)) overlapped += 1;
      }
      expect(overlapped).toBe(3);
    } finally {
      await ctx.client.set(stopKey, "1");
      await exited;
    }
    const summary = JSON.parse(stdout) as { seqs: number[] };
    expect(await ctx.log.verify()).toMatchObject({
      ok: true,
      count: summary.seqs.length,
      lastSeq: summary.seqs.at(-1),
    });
  });

  it("anchor while other processes append vouches for a consistent head", async () => {
    const { log, prefix } = newLog({ key: KEY });
    const path = anchorsFile();
    const child = run(
      process.execPath,
      [
        "--conditions=@agentry/source",
        "--import",
        "tsx",
        new URL("./append-child.fixture.ts", import.meta.url).pathname,
      ],
      {
        env: { ...process.env, REDIS_URL: redis.url, PREFIX: prefix, COUNT: "300", WORKER: "w-anchor", KEY },
      },
    );
    while ((await log.readHead()).seq < 10) await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 3; i++) expect(await log.anchor(path)).toMatchObject({ ok: true });
    await child;
    expect(await log.anchor(path)).toMatchObject({ ok: true, anchor: { seq: 300 } });
    expect(await log.verifyWithAnchors(path)).toMatchObject({ ok: true, count: 300, anchors: 4 });
  });
});
