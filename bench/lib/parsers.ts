/**
 * Figures from the printed output of the benchmark scripts that predate the BENCH_RESULT line
 * (bench/budget, bench/governance, bench/memory, bench/approvals). Each returns [] when its
 * lines are not found, and the runner then keeps the raw output only.
 */
import type { Figure } from "./result.js";

const lines = (out: string) => out.split("\n").map((l) => l.trimEnd());

/** bench/budget/reserve-settle.ts */
export function parseBudget(out: string): Figure[] {
  const figures: Figure[] = [];
  for (const l of lines(out)) {
    const pairs =
      /^(.+?)\s+(\d+) pairs\/s\s+\((\d+) pairs, p50 ([\d.]+) ms, p99 ([\d.]+|n\/a \(n<100\)) ms per pair(?:, ([\d.]+) script calls per pair)?/.exec(
        l,
      );
    if (pairs) {
      figures.push({
        label: `reserve+settle pairs/s, ${pairs[1]?.trim()}`,
        value: Number(pairs[2]),
        unit: "pairs/s",
        note: `${pairs[3]} pairs, p50 ${pairs[4]} ms, p99 ${pairs[5]} ms per pair${pairs[6] ? `, ${pairs[6]} script calls per pair` : ""}`,
      });
      continue;
    }
    const script = /^redis (evalsha|eval): (\d+) calls, ([\d.]+) µs per call/.exec(l);
    if (script)
      figures.push({
        label: `Redis server time per ${script[1]} (budget scripts)`,
        value: Number(script[3]),
        unit: "µs",
        note: `${script[2]} calls`,
      });
    const over =
      /^overshoot check(, allowances of \d+ calls)?: (\d+) granted, (\d+) refused, global spent (\d+)\/(\d+) tokens; .*: (\d+)$/.exec(
        l,
      );
    if (over) {
      figures.push({
        label: `budget overshoot under contention${over[1] ?? ""} (must be 0)`,
        value: Number(over[6]),
        unit: "tokens + micro-USD",
        note: `4 processes × 64 loops on a small budget: ${over[2]} granted, ${over[3]} refused, global ${over[4]}/${over[5]} tokens spent`,
      });
    }
  }
  return figures;
}

/** bench/governance/audit-append.ts */
export function parseAudit(out: string): Figure[] {
  const figures: Figure[] = [];
  for (const l of lines(out)) {
    const m =
      /^(.+?)\s+(\d+) appends\/s\s+\((\d+) appends, p50 ([\d.]+) ms, p99 ([\d.]+|n\/a \(n<100\)) ms, ([\d.]+) script calls per append\)\s+chain (\S+)/.exec(
        l,
      );
    if (m) {
      figures.push({
        label: `audit appends/s, ${m[1]?.trim()}`,
        value: Number(m[2]),
        unit: "appends/s",
        note: `${m[3]} appends, p50 ${m[4]} ms, p99 ${m[5]} ms, ${m[6]} script calls per append, chain ${m[7]}`,
      });
    }
  }
  return figures;
}

/** bench/memory/vector-search.ts: the table after its header line. */
export function parseVector(out: string): Figure[] {
  const figures: Figure[] = [];
  let inTable = false;
  // "p99", or "max" when there were fewer than 100 queries.
  let tailName = "p99";
  for (const l of lines(out)) {
    if (/^\s*items\s+path\s+insert\/s/.test(l)) {
      inTable = true;
      tailName = /search (p99|max) ms/.exec(l)?.[1] ?? tailName;
      continue;
    }
    if (!inTable) continue;
    const cells = l.trim().split(/\s+/);
    if (cells.length < 7 || !/^\d+$/.test(cells[0] ?? "")) continue;
    const [items, path, insert, p50, tail, queries, memory] = cells;
    figures.push({
      label: `vector search p50 / ${tailName}, ${Number(items).toLocaleString("en")} items`,
      value: `${p50} / ${tail}`,
      unit: "ms",
      note: `${path} path, top 5, ${queries} queries`,
    });
    figures.push({
      label: `vector insert rate, up to ${Number(items).toLocaleString("en")} items`,
      value: Number(insert),
      unit: "items/s",
      note: `Redis used ${memory}`,
    });
  }
  return figures;
}

/** bench/approvals/resume-latency.ts */
export function parseApprovalResume(out: string): Figure[] {
  const figures: Figure[] = [];
  const title =
    /Approval resume latency \(ms\), (\d+) approvals one at a time, (\d+)→(\d+) pending, (.+)$/m.exec(out);
  const context = title
    ? `${title[1]} approvals one at a time, ${title[2]}→${title[3]} pending, ${title[4]}`
    : "";
  for (const l of lines(out)) {
    const m = /^(decide|return → tool|approve → tool)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+|n\/a)\s+([\d.]+)$/.exec(
      l,
    );
    if (m) {
      // Below 100 approvals the script prints no p99 (n/a): the max stands in for the tail.
      const hasP99 = m[4] !== "n/a";
      figures.push({
        label: `approval ${m[1]} p50 / ${hasP99 ? "p99" : "max"}`,
        value: `${m[2]} / ${hasP99 ? m[4] : m[5]}`,
        unit: "ms",
        note: `p90 ${m[3]}${hasP99 ? `, max ${m[5]}` : ", no p99 (n<100)"}${m[1] === "approve → tool" ? `; ${context}` : ""}`,
      });
    }
  }
  const tail = /tools run: (\d+) for (\d+) approvals/.exec(out);
  if (tail)
    figures.push({
      label: "tools run per approval (must be 1)",
      value: Number(tail[1]) / Number(tail[2]),
      note: `${tail[1]} tool runs for ${tail[2]} approvals`,
    });
  return figures;
}
