import { readFile } from "node:fs/promises";
import { canonicalJson } from "../canonical-json.js";
import { macEquals, type AuditKey, type AuditKeyring } from "./audit-key.js";
import type { AnchorPoint } from "./chain.js";

/** What marks a line of an anchors file, so a file of something else is never taken for one. */
export const ANCHOR_KIND = "agentry-audit-anchor";

/**
 * One checkpoint of a chain head, kept outside Redis: one JSON line of an anchors file. The MAC
 * (with the audit key's anchor subkey) covers every other member, so a line cannot be forged or
 * moved to another seq or log by anyone without the key.
 */
export interface AuditAnchor {
  kind: typeof ANCHOR_KIND;
  v: 1;
  /** The audit stream's key (`<prefix>:audit`): an anchors file may serve several logs. */
  stream: string;
  /** The head's seq: entries 1..seq existed when anchored (0: the log was empty). */
  seq: number;
  /** The head's hash: entry `seq`'s hash. */
  hash: string;
  /** When the anchor was taken (ISO-8601). */
  time: string;
  /** Present (true) on an anchor `audit archive` wrote: the chain may be trimmed through it. */
  archived?: true;
  kid: string;
  mac: string;
}

/**
 * One checkpoint of several chains' heads taken together (a deployment with queue shards: the
 * global chain and every shard's), in one line, so none can be rolled back alone. Authenticated
 * like {@link AuditAnchor}.
 */
export interface AuditAnchorSet {
  kind: typeof ANCHOR_KIND;
  v: 2;
  /** Each chain's head: its stream's key, seq and hash. */
  heads: { stream: string; seq: number; hash: string }[];
  time: string;
  /** Present (true) on an anchor `audit archive` wrote: each chain may be trimmed through its head here. */
  archived?: true;
  kid: string;
  mac: string;
}

/** The JSON line (no newline) of an anchor of several chains' heads (see {@link AuditAnchorSet}). */
export function anchorSetLine(
  key: AuditKey,
  point: { heads: { stream: string; seq: number; hash: string }[]; time: string; archived?: boolean },
): string {
  const body = {
    kind: ANCHOR_KIND,
    v: 2 as const,
    heads: point.heads.map((h) => ({ stream: h.stream, seq: h.seq, hash: h.hash })),
    time: point.time,
    ...(point.archived ? { archived: true as const } : {}),
    kid: key.kid,
  };
  return canonicalJson({ ...body, mac: key.macAnchor(canonicalJson(body)) });
}

/** The JSON line (no newline) of an anchor of `head`, authenticated with `key`. */
export function anchorLine(
  key: AuditKey,
  point: { stream: string; seq: number; hash: string; time: string; archived?: boolean },
): string {
  const body = {
    kind: ANCHOR_KIND,
    v: 1 as const,
    stream: point.stream,
    seq: point.seq,
    hash: point.hash,
    time: point.time,
    ...(point.archived ? { archived: true as const } : {}),
    kid: key.kid,
  };
  return canonicalJson({ ...body, mac: key.macAnchor(canonicalJson(body)) });
}

/** The anchors of one log read from a file, or the first line that cannot be trusted. */
export type AnchorFile =
  | {
      ok: true;
      /** This stream's anchors, in file order. */
      points: (AnchorPoint & { time: string })[];
      /** Every anchor line in the file, of any stream. */
      lines: number;
      /** Every stream some line of the file anchors. */
      streams: Set<string>;
      /** False when no key was configured, so the lines' MACs were not checked. */
      authenticated: boolean;
    }
  | { ok: false; line: number; detail: string };

/**
 * Parses an anchors file: lines of one chain (`v: 1`) and lines of several (`v: 2`, one head per
 * chain) alike. With a key configured every line must carry a valid MAC by a
 * configured key (a forged or edited line means the file was tampered with); without one the
 * lines are taken as they are (they can only add checks, never excuse a broken chain).
 * Blank lines are skipped; anything else that is not an anchor is refused.
 */
export function parseAnchors(text: string, options: { stream: string; keys: AuditKeyring }): AnchorFile {
  const points: (AnchorPoint & { time: string })[] = [];
  const streams = new Set<string>();
  let lines = 0;
  const rows = text.split("\n");
  for (let i = 0; i < rows.length; i++) {
    const row = (rows[i] as string).trim();
    if (row === "") continue;
    const lineNo = i + 1;
    let a: AuditAnchor;
    try {
      a = JSON.parse(row) as AuditAnchor;
    } catch {
      return { ok: false, line: lineNo, detail: "not JSON" };
    }
    const set = a as unknown as AuditAnchorSet;
    if (typeof set === "object" && set !== null && set.kind === ANCHOR_KIND && set.v === 2) {
      if (
        !Array.isArray(set.heads) ||
        set.heads.some(
          (h) =>
            typeof h !== "object" ||
            h === null ||
            typeof h.stream !== "string" ||
            !Number.isSafeInteger(h.seq) ||
            h.seq < 0 ||
            typeof h.hash !== "string",
        ) ||
        typeof set.time !== "string" ||
        (set.archived !== undefined && set.archived !== true) ||
        typeof set.kid !== "string" ||
        typeof set.mac !== "string"
      )
        return { ok: false, line: lineNo, detail: "not an audit anchor" };
      if (options.keys.authenticated) {
        const key = options.keys.get(set.kid);
        if (!key) return { ok: false, line: lineNo, detail: `key id ${set.kid} is not configured` };
        const { mac, ...body } = set;
        if (!macEquals(key.macAnchor(canonicalJson(body)), mac))
          return { ok: false, line: lineNo, detail: "MAC does not match (edited or forged)" };
      }
      lines += 1;
      for (const h of set.heads) {
        streams.add(h.stream);
        if (h.stream === options.stream)
          points.push({
            seq: h.seq,
            hash: h.hash,
            time: set.time,
            ...(set.archived ? { archived: true } : {}),
            label: `${set.archived ? "archive anchor" : "anchor"} of ${set.time} (line ${lineNo})`,
          });
      }
      continue;
    }
    if (
      typeof a !== "object" ||
      a === null ||
      a.kind !== ANCHOR_KIND ||
      a.v !== 1 ||
      typeof a.stream !== "string" ||
      !Number.isSafeInteger(a.seq) ||
      a.seq < 0 ||
      typeof a.hash !== "string" ||
      typeof a.time !== "string" ||
      (a.archived !== undefined && a.archived !== true) ||
      typeof a.kid !== "string" ||
      typeof a.mac !== "string"
    ) {
      return { ok: false, line: lineNo, detail: "not an audit anchor" };
    }
    if (options.keys.authenticated) {
      const key = options.keys.get(a.kid);
      if (!key) return { ok: false, line: lineNo, detail: `key id ${a.kid} is not configured` };
      const { mac, ...body } = a;
      if (!macEquals(key.macAnchor(canonicalJson(body)), mac))
        return { ok: false, line: lineNo, detail: "MAC does not match (edited or forged)" };
    }
    lines += 1;
    streams.add(a.stream);
    if (a.stream === options.stream)
      points.push({
        seq: a.seq,
        hash: a.hash,
        time: a.time,
        ...(a.archived ? { archived: true } : {}),
        label: `${a.archived ? "archive anchor" : "anchor"} of ${a.time} (line ${lineNo})`,
      });
  }
  return { ok: true, points, lines, streams, authenticated: options.keys.authenticated };
}

/**
 * {@link parseAnchors} of a file. A missing file reads as empty only with `missingOk` (the first
 * `anchor` run creates it); read errors are thrown as they are.
 */
export async function readAnchors(
  path: string,
  options: { stream: string; keys: AuditKeyring; missingOk?: boolean },
): Promise<AnchorFile> {
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" && options.missingOk) return "";
    throw err;
  });
  return parseAnchors(text, options);
}
