import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { AgentryError, type AuditEntryInput } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AuditLog, verifyJsonl } from "./audit-log.js";
import { entryHash } from "./chain.js";
import { GENESIS_HASH, type AuditEntry } from "./entries.js";
import { expandRun, storedFieldsOf } from "./stored.testing.js";

const run = promisify(execFile);
const redis = useTestRedis("gov-audit");

function newLog(options: { redactPaths?: string[] } = {}) {
  const prefix = redis.freshPrefix("audit");
  const client = redis.client();
  return { log: new AuditLog({ redis: client, prefix, ...options }), client, prefix };
}

const entry = (i: number, taskId = "task-1"): AuditEntryInput => ({
  type: "action",
  taskId,
  sessionId: "s1",
  userId: "u1",
  tenant: "acme",
  traceId: "trace-1",
  data: { tool: "get_weather", input: { city: `c${i}` }, outcome: "ok", output: { i } },
});

async function filled(n: number) {
  const ctx = newLog();
  for (let i = 1; i <= n; i++) await ctx.log.append(entry(i, i % 2 === 0 ? "task-even" : "task-odd"));
  return ctx;
}

/** Reads the raw stream. */
async function rawStream(ctx: {
  log: AuditLog;
  client: ReturnType<typeof redis.client>;
}): Promise<{ id: string; raw: string }[]> {
  const page = await ctx.client.xrange(ctx.log.streamKey, "-", "+");
  const lines = expandRun(page, GENESIS_HASH);
  return page.map(([id], i) => ({ id, raw: lines[i] as string }));
}

/**
 * How entries sit in the stream: `stored`, as written now (no seq, prevHash or hash in the JSON;
 * the hash in `h`), or `whole`, as written before `h` (every member in the JSON).
 */
type Form = "stored" | "whole";

/** Replaces the whole stream, as an attacker with Redis access could, with entries in `form`. */
async function rewrite(
  ctx: { log: AuditLog; client: ReturnType<typeof redis.client> },
  items: { id: string; raw: string }[],
  form: Form = "stored",
) {
  await ctx.client.del(ctx.log.streamKey);
  for (const { id, raw } of items)
    await ctx.client.xadd(ctx.log.streamKey, id, ...(form === "stored" ? storedFieldsOf(raw) : ["e", raw]));
}

/**
 * What verify names for each attack on each form: a stored entry has no prevHash or seq of its
 * own (they are the stream's), so a broken link or a moved entry shows as its hash not matching.
 */
const BREAKS: Record<Form, { relinked: string; inserted: string; reordered: string }> = {
  stored: { relinked: "hash-mismatch", inserted: "hash-mismatch", reordered: "hash-mismatch" },
  whole: { relinked: "prev-mismatch", inserted: "seq-gap", reordered: "seq-gap" },
};

const parse = (raw: string) => JSON.parse(raw) as AuditEntry & { data: { input: { city: string } } };

describe("AuditLog", () => {
  it("chains entries: seq from 1, prevHash links, hashes over canonical JSON", async () => {
    const { log } = await filled(5);
    const entries = await log.read();
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(entries[0]?.prevHash).toBe(GENESIS_HASH);
    for (let i = 1; i < entries.length; i++) expect(entries[i]?.prevHash).toBe(entries[i - 1]?.hash);
    for (const e of entries) expect(entryHash(e)).toBe(e.hash);
    expect(entries[0]).toMatchObject({
      type: "action",
      taskId: "task-odd",
      sessionId: "s1",
      userId: "u1",
      tenant: "acme",
      traceId: "trace-1",
    });
    expect(typeof entries[0]?.ts).toBe("string");
    expect(await log.verify()).toEqual({
      ok: true,
      count: 5,
      lastSeq: 5,
      lastHash: entries[4]?.hash,
      authenticated: false,
      unchecked: 0,
      anchors: 0,
    });
  });

  it("reads from a seq, tails, and filters by task", async () => {
    const { log } = await filled(7);
    expect((await log.read({ fromSeq: 3, count: 2 })).map((e) => e.seq)).toEqual([3, 4]);
    expect((await log.read({ taskId: "task-even" })).map((e) => e.seq)).toEqual([2, 4, 6]);
    expect((await log.tail(3)).map((e) => e.seq)).toEqual([5, 6, 7]);
    expect((await log.tail(2, { taskId: "task-odd" })).map((e) => e.seq)).toEqual([5, 7]);
    expect(await newLog().log.verify()).toMatchObject({ ok: true, count: 0 });
  });

  it.each(["stored", "whole"] as const)(
    "%s entries: detects an edited entry, and an edit with a recomputed hash",
    async (form) => {
      const ctx = await filled(5);
      const items = await rawStream(ctx);
      const edited = parse(items[2]!.raw);
      edited.data.input.city = "Atlantis";
      const storeEdited = () =>
        rewrite(
          ctx,
          items.map((it, i) => (i === 2 ? { id: it.id, raw: JSON.stringify(edited) } : it)),
          form,
        );
      await storeEdited();
      expect(await ctx.log.verify()).toMatchObject({
        ok: false,
        count: 2,
        firstBad: { seq: 3, id: "3-0", reason: "hash-mismatch" },
      });

      // Entry 3 now verifies; entry 4 no longer links to it.
      edited.hash = entryHash(edited);
      await storeEdited();
      expect(await ctx.log.verify()).toMatchObject({
        ok: false,
        count: 3,
        firstBad: { seq: 4, id: "4-0", reason: BREAKS[form].relinked },
      });
    },
  );

  it("detects a deleted entry (seq-gap), and a deleted last entry (head-mismatch)", async () => {
    const ctx = await filled(5);
    await ctx.client.xdel(ctx.log.streamKey, "3-0");
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      count: 2,
      firstBad: { seq: 3, id: "4-0", reason: "seq-gap" },
    });
    const tail = await filled(4);
    await tail.client.xdel(tail.log.streamKey, "4-0");
    expect(await tail.log.verify()).toMatchObject({
      ok: false,
      count: 3,
      firstBad: { seq: 4, reason: "head-mismatch" },
    });
  });

  it.each(["stored", "whole"] as const)(
    "%s entries: detects an inserted entry, even one with a valid hash and link",
    async (form) => {
      const ctx = await filled(4);
      const items = await rawStream(ctx);
      const prev = parse(items[1]!.raw);
      const forged = {
        ...parse(items[2]!.raw),
        seq: 3,
        prevHash: prev.hash,
        data: { tool: "delete_resource", input: { resource: "x" }, outcome: "ok" },
      };
      forged.hash = entryHash(forged);
      const shifted = [
        ...items.slice(0, 2),
        { id: "3-0", raw: JSON.stringify(forged) },
        ...items.slice(2).map((it, i) => ({ id: `${4 + i}-0`, raw: it.raw })),
      ];
      await rewrite(ctx, shifted, form);
      expect(await ctx.log.verify()).toMatchObject({
        ok: false,
        count: 3,
        firstBad: { seq: 4, id: "4-0", reason: BREAKS[form].inserted },
      });
    },
  );

  it.each(["stored", "whole"] as const)("%s entries: detects reordered entries", async (form) => {
    const ctx = await filled(5);
    const items = await rawStream(ctx);
    const swapped = items.map((it, i) =>
      i === 1 ? { id: it.id, raw: items[2]!.raw } : i === 2 ? { id: it.id, raw: items[1]!.raw } : it,
    );
    await rewrite(ctx, swapped, form);
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      count: 1,
      firstBad: { seq: 2, id: "2-0", reason: BREAKS[form].reordered },
    });
    // Reordered ids with content intact.
    const moved = [
      items[0]!,
      { id: "2-0", raw: items[2]!.raw },
      { id: "3-0", raw: items[1]!.raw },
      ...items.slice(3),
    ];
    await rewrite(ctx, moved, form);
    expect(await ctx.log.verify()).toMatchObject({
      ok: false,
      firstBad: { seq: 2, reason: BREAKS[form].reordered },
    });
  });

  it("stores an entry without its seq, prevHash and hash, which the stream id, the previous entry and h give", async () => {
    const ctx = await filled(2);
    const [[id, fields]] = (await ctx.client.xrange(ctx.log.streamKey, "2-0", "2-0")) as [[string, string[]]];
    const [first, second] = await ctx.log.read();
    expect(id).toBe("2-0");
    expect(fields[0]).toBe("e");
    expect(fields[1]).not.toMatch(/"(seq|prevHash|hash)"/);
    expect(fields.slice(2)).toEqual(["h", second?.hash]);
    expect(second).toMatchObject({ seq: 2, prevHash: first?.hash });
  });

  it("reads, verifies and exports a chain whose older entries are stored whole", async () => {
    // A log written before entries were stored without their seq, prevHash and hash.
    const ctx = await filled(3);
    await rewrite(ctx, await rawStream(ctx), "whole");
    const writer = new AuditLog({ redis: ctx.client, prefix: ctx.prefix });
    for (let i = 4; i <= 5; i++) await writer.append(entry(i, "task-new"));
    const page = await ctx.client.xrange(ctx.log.streamKey, "-", "+");
    expect(page.map(([, f]) => f.length)).toEqual([2, 2, 2, 4, 4]);

    expect(await ctx.log.verify()).toMatchObject({ ok: true, count: 5, lastSeq: 5 });
    const entries = await ctx.log.read();
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    for (let i = 1; i < entries.length; i++) expect(entries[i]?.prevHash).toBe(entries[i - 1]?.hash);
    for (const e of entries) expect(entryHash(e)).toBe(e.hash);
    expect(await ctx.log.read({ fromSeq: 4 })).toEqual(entries.slice(3));
    expect(await ctx.log.tail(2)).toEqual(entries.slice(3));
    expect(await ctx.log.tail(1, { taskId: "task-new" })).toEqual(entries.slice(4));

    const dir = mkdtempSync(join(tmpdir(), "agentry-audit-"));
    const whole = join(dir, "whole.jsonl");
    await ctx.log.exportJsonl(whole);
    expect(
      readFileSync(whole, "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as AuditEntry),
    ).toEqual(entries);
    expect(await verifyJsonl(whole)).toMatchObject({ ok: true, count: 5, lastSeq: 5 });
    const partial = join(dir, "partial.jsonl");
    await ctx.log.exportJsonl(partial, { fromSeq: 5 });
    expect(JSON.parse(readFileSync(partial, "utf8"))).toEqual(entries[4]);
  });

  it("exports JSONL that verifies on its own and detects an edited line", async () => {
    const { log } = await filled(6);
    const dir = mkdtempSync(join(tmpdir(), "agentry-audit-"));
    const file = join(dir, "audit.jsonl");
    expect(await log.exportJsonl(file)).toEqual({ count: 6, lastSeq: 6 });
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(6);
    expect(await verifyJsonl(file)).toMatchObject({ ok: true, count: 6, lastSeq: 6 });

    const partial = join(dir, "partial.jsonl");
    await log.exportJsonl(partial, { fromSeq: 4 });
    expect(await verifyJsonl(partial)).toMatchObject({ ok: true, count: 3 });

    const bad = lines.map((l, i) => (i === 4 ? l.replace('"c5"', '"c55"') : l));
    writeFileSync(join(dir, "bad.jsonl"), `${bad.join("\n")}\n`);
    expect(await verifyJsonl(join(dir, "bad.jsonl"))).toMatchObject({
      ok: false,
      firstBad: { seq: 5, id: "line 5", reason: "hash-mismatch" },
    });
    writeFileSync(join(dir, "gap.jsonl"), `${lines.filter((_, i) => i !== 1).join("\n")}\n`);
    expect(await verifyJsonl(join(dir, "gap.jsonl"))).toMatchObject({
      ok: false,
      firstBad: { seq: 2, reason: "seq-gap" },
    });
  });

  it("redacts secrets before hashing and writing", async () => {
    const ctx = newLog({ redactPaths: ["data.input.ssn", "data.output.*.card"] });
    await ctx.log.append({
      type: "action",
      taskId: "t",
      data: {
        tool: "call_api",
        input: {
          url: "https://x",
          apiKey: "sk-ant-SECRET1",
          headers: { Authorization: "Bearer SECRET2" },
          ssn: "SECRET3",
          nested: { client_secret: "SECRET4", refreshToken: "SECRET5" },
        },
        outcome: "ok",
        output: { items: { card: "SECRET6", name: "kept" }, maxTokens: 1024 },
      },
    });
    const raw = (await rawStream(ctx)).map((r) => r.raw).join("\n");
    expect(raw).not.toMatch(/SECRET/);
    const [stored] = await ctx.log.read();
    expect(stored?.data).toMatchObject({
      input: {
        url: "https://x",
        apiKey: "[redacted]",
        headers: { Authorization: "[redacted]" },
        ssn: "[redacted]",
        nested: { client_secret: "[redacted]", refreshToken: "[redacted]" },
      },
      output: { items: { card: "[redacted]", name: "kept" }, maxTokens: 1024 },
    });
    expect(await ctx.log.verify()).toMatchObject({ ok: true, count: 1 });
  });

  it("a failing append throws AUDIT_FAILED", async () => {
    const ctx = newLog();
    await ctx.log.append(entry(1));
    ctx.client.disconnect();
    const err = await ctx.log.append(entry(2)).catch((e: unknown) => e);
    expect(AgentryError.isInstance(err) && err.code).toBe("AUDIT_FAILED");
    const other = newLog();
    const nan = await other.log
      .append({ type: "budget", data: { event: "settled", tokens: Number.NaN } })
      .catch((e: unknown) => e);
    expect(AgentryError.isInstance(nan) && nan.code).toBe("AUDIT_FAILED");
    expect(await other.log.verify()).toMatchObject({ ok: true, count: 0 });
  });

  it("two writers in one process interleave into one chain", async () => {
    const ctx = newLog();
    const second = new AuditLog({ redis: redis.client(), prefix: ctx.prefix });
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? ctx.log : second).append(entry(i))),
    );
    expect(await ctx.log.verify()).toMatchObject({ ok: true, count: 40 });
  });

  it("four processes appending concurrently keep the chain intact and seq contiguous", async () => {
    const { log, prefix } = newLog();
    const perWorker = 60;
    const startAt = Date.now() + 1_500;
    const children = [0, 1, 2, 3].map((w) =>
      run(
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
            PREFIX: prefix,
            COUNT: String(perWorker),
            WORKER: `w${w}`,
            START_AT: String(startAt),
          },
        },
      ),
    );
    const results = (await Promise.all(children)).map(
      (c) => JSON.parse(c.stdout) as { worker: string; seqs: number[] },
    );
    const all = results.flatMap((r) => r.seqs).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 4 * perWorker }, (_, i) => i + 1));
    expect(await log.verify()).toMatchObject({ ok: true, count: 4 * perWorker });
    const entries = await log.read({ count: 1_000 });
    for (const r of results)
      expect(entries.filter((e) => e.actor === r.worker).map((e) => e.seq)).toEqual(r.seqs);
  });
});
