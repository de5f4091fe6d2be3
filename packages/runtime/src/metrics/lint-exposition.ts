/**
 * A strict reader and linter of the Prometheus text exposition format (version 0.0.4), for tests
 * of what `/metrics` serves. It reports what `promtool check metrics` reports: lines the text
 * parser rejects, and the lint rules of Prometheus's `promlint` (help text, `_total` on counters
 * only, base units, no abbreviated units, no type in the name, reserved suffixes and labels,
 * no colons, snake_case). On top of those it holds Agentry's naming conventions: a family carries
 * one unit, named by the last word of its name (before `_total` on a counter), never a `unit`
 * label; money is in `usd` and tokens in `tokens`, never a scaled unit such as `micro_usd`.
 */

/** One problem found in an exposition. */
export interface ExpositionProblem {
  /** The metric family (or sample name) the problem is about. */
  metric: string;
  /** 1-based line number, for problems found while reading a line. */
  line?: number;
  text: string;
}

/** A metric family read from an exposition. */
export interface ExpositionFamily {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help?: string;
  samples: ExpositionSample[];
}

/** One sample line. */
export interface ExpositionSample {
  /** The sample's own name (`x_bucket` for a bucket of histogram `x`). */
  name: string;
  labels: Record<string, string>;
  value: number;
  line: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** What Go's `strconv.ParseFloat` (the Prometheus text parser) accepts: case-insensitive `NaN`, `Inf`, `Infinity`. */
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity)$|^nan$/i;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const CAMEL_CASE = /[a-z][A-Z]/;

/** Unit words and their base units: promlint's list, and Agentry's `tokens` and `usd`. */
const UNITS: Readonly<Record<string, string>> = {
  amperes: "amperes",
  bytes: "bytes",
  celsius: "celsius",
  grams: "grams",
  joules: "joules",
  kelvin: "kelvin",
  meters: "meters",
  metres: "metres",
  seconds: "seconds",
  volts: "volts",
  minutes: "seconds",
  hours: "seconds",
  days: "seconds",
  weeks: "seconds",
  kelvins: "kelvin",
  fahrenheit: "celsius",
  rankine: "celsius",
  inches: "meters",
  yards: "meters",
  miles: "meters",
  bits: "bytes",
  calories: "joules",
  pounds: "grams",
  ounces: "grams",
  tokens: "tokens",
  usd: "usd",
  dollars: "usd",
  cents: "usd",
};
const UNIT_PREFIXES = [
  "pico",
  "nano",
  "micro",
  "milli",
  "centi",
  "deci",
  "deca",
  "hecto",
  "kilo",
  "kibi",
  "mega",
  "mibi",
  "giga",
  "gibi",
  "tera",
  "tebi",
  "peta",
  "pebi",
];
const UNIT_ABBREVIATIONS = ["s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"];
const TYPE_WORDS = ["counter", "gauge", "histogram", "summary", "gauge_histogram"];
/** Words after the unit that do not end a name's unit position. */
const UNIT_SUFFIXES = new Set(["total", "info"]);

/**
 * Reads a text exposition strictly. Returns the families in order and every problem the reader
 * found (a line it cannot read is reported and skipped; reading goes on).
 */
export function parseExposition(text: string): {
  families: ExpositionFamily[];
  problems: ExpositionProblem[];
} {
  const problems: ExpositionProblem[] = [];
  const families = new Map<string, ExpositionFamily>();
  const order: ExpositionFamily[] = [];
  /** Families whose lines ended (another family's line came after them). */
  const closed = new Set<string>();
  const seriesSeen = new Set<string>();
  let current: ExpositionFamily | undefined;
  const helpSeen = new Set<string>();
  const typeSeen = new Set<string>();

  const familyFor = (name: string, line: number): ExpositionFamily => {
    let family = families.get(name);
    if (!family) {
      family = { name, type: "untyped", samples: [] };
      families.set(name, family);
      order.push(family);
    }
    if (current !== family) {
      if (closed.has(name))
        problems.push({ metric: name, line, text: "lines of this family are not grouped together" });
      if (current) closed.add(current.name);
      current = family;
    }
    return family;
  };

  const lines = text.split("\n");
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, keyword, name = "", rest = ""] = m;
      if (!METRIC_NAME.test(name)) {
        problems.push({ metric: name, line: lineNo, text: `invalid metric name in ${keyword} line` });
        return;
      }
      const family = familyFor(name, lineNo);
      if (keyword === "HELP") {
        if (helpSeen.has(name))
          problems.push({ metric: name, line: lineNo, text: "second HELP line for this metric name" });
        helpSeen.add(name);
        family.help = unescapeHelp(rest);
      } else {
        if (typeSeen.has(name))
          problems.push({ metric: name, line: lineNo, text: "second TYPE line for this metric name" });
        typeSeen.add(name);
        if (family.samples.length > 0)
          problems.push({ metric: name, line: lineNo, text: "TYPE line after samples of this family" });
        const type = rest.trim();
        if (!TYPES.has(type))
          problems.push({ metric: name, line: lineNo, text: `unknown metric type "${type}"` });
        else family.type = type as ExpositionFamily["type"];
      }
      return;
    }
    const sample = parseSampleLine(line, lineNo, problems);
    if (!sample) return;
    const family = familyFor(familyNameOf(sample.name, families), lineNo);
    const key = `${sample.name}{${Object.entries(sample.labels)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(",")}}`;
    if (seriesSeen.has(key))
      problems.push({ metric: family.name, line: lineNo, text: `duplicate series ${key}` });
    seriesSeen.add(key);
    family.samples.push(sample);
  });
  for (const family of order) problems.push(...checkSamples(family));
  return { families: order, problems };
}

/**
 * Every problem `promtool check metrics` would report for this exposition, plus Agentry's naming
 * conventions (see the module comment). An empty array means the exposition is clean.
 */
export function lintExposition(text: string): ExpositionProblem[] {
  const { families, problems } = parseExposition(text);
  for (const family of families) problems.push(...lintFamily(family));
  return problems;
}

function lintFamily(family: ExpositionFamily): ExpositionProblem[] {
  const out: ExpositionProblem[] = [];
  const add = (text: string) => out.push({ metric: family.name, text });
  const { name, type } = family;
  const lower = name.toLowerCase();
  const words = lower.split("_");
  const hasWord = (w: string) => lower.includes(`_${w}_`) || lower.endsWith(`_${w}`);

  if (family.help === undefined) add("no help text");
  if (type === "untyped") add("no TYPE line (untyped)");

  // Counters and the `_total` suffix.
  if (type === "counter" && !name.endsWith("_total")) add('counter metrics should have "_total" suffix');
  if (type !== "untyped" && type !== "counter" && name.endsWith("_total"))
    add('non-counter metrics should not have "_total" suffix');

  // Names reserved for histograms and summaries.
  if (type !== "untyped") {
    if (type !== "histogram" && name.endsWith("_bucket"))
      add('non-histogram metrics should not have "_bucket" suffix');
    if (type !== "histogram" && type !== "summary" && name.endsWith("_count"))
      add('non-histogram and non-summary metrics should not have "_count" suffix');
    if (type !== "histogram" && type !== "summary" && name.endsWith("_sum"))
      add('non-histogram and non-summary metrics should not have "_sum" suffix');
    const labelNames = new Set(family.samples.flatMap((s) => Object.keys(s.labels)));
    if (type !== "histogram" && labelNames.has("le")) add('non-histogram metrics should not have "le" label');
    if (type !== "summary" && labelNames.has("quantile"))
      add('non-summary metrics should not have "quantile" label');
  }

  for (const t of TYPE_WORDS) if (hasWord(t)) add(`metric name should not include type '${t}'`);
  if (name.includes(":")) add("metric names should not contain ':'");
  if (CAMEL_CASE.test(name)) add("metric names should be written in 'snake_case' not 'camelCase'");
  const labelNames = new Set(family.samples.flatMap((s) => Object.keys(s.labels)));
  for (const label of labelNames)
    if (CAMEL_CASE.test(label))
      add(`label names should be written in 'snake_case' not 'camelCase' (${label})`);
  for (const abbreviation of UNIT_ABBREVIATIONS)
    if (hasWord(abbreviation)) add("metric names should not contain abbreviated units");

  // Units: base units only, one per family, named last.
  const units: { index: number; word: string; base: string }[] = [];
  words.forEach((word, index) => {
    const direct = UNITS[word];
    if (direct !== undefined) {
      const previous = words[index - 1];
      // A scale written as its own word (`micro_usd`) is a non-base unit too.
      if (previous !== undefined && UNIT_PREFIXES.includes(previous))
        units.push({ index, word: `${previous}_${word}`, base: direct });
      else units.push({ index, word, base: direct });
      return;
    }
    for (const prefix of UNIT_PREFIXES) {
      const base = word.startsWith(prefix) ? UNITS[word.slice(prefix.length)] : undefined;
      if (base !== undefined) {
        units.push({ index, word, base });
        return;
      }
    }
  });
  for (const unit of units)
    if (unit.word !== unit.base) add(`use base unit "${unit.base}" instead of "${unit.word}"`);
  if (new Set(units.map((u) => u.base)).size > 1)
    add(`one unit per metric: the name mixes ${units.map((u) => u.word).join(" and ")}`);
  const last = units.at(-1);
  if (last && words.slice(last.index + 1).some((w) => !UNIT_SUFFIXES.has(w)))
    add(`the unit "${last.word}" should end the name (before "_total" on a counter)`);
  if (labelNames.has("unit"))
    add('a "unit" label mixes units in one metric: put the unit in the name, one metric per unit');
  return out;
}

/** Samples that do not fit their family's type (histogram buckets, counter values). */
function checkSamples(family: ExpositionFamily): ExpositionProblem[] {
  const out: ExpositionProblem[] = [];
  const add = (text: string, line?: number) =>
    out.push({ metric: family.name, text, ...(line !== undefined ? { line } : {}) });
  if (family.type === "counter") {
    for (const s of family.samples) {
      if (s.name !== family.name) add(`sample ${s.name} does not belong to counter ${family.name}`, s.line);
      else if (!(s.value >= 0)) add(`counter value ${s.value} is negative or NaN`, s.line);
    }
  }
  if (family.type === "gauge" || family.type === "untyped") {
    for (const s of family.samples)
      if (s.name !== family.name) add(`sample ${s.name} does not belong to ${family.name}`, s.line);
  }
  if (family.type === "histogram") {
    const series = new Map<
      string,
      { buckets: { le: number; value: number }[]; count?: number; sum?: boolean }
    >();
    for (const s of family.samples) {
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1)));
      const entry = series.get(key) ?? { buckets: [] };
      series.set(key, entry);
      if (s.name === `${family.name}_bucket`) {
        const bound = le === undefined ? Number.NaN : parseFloatToken(le);
        if (Number.isNaN(bound)) add(`bucket without a valid "le" label`, s.line);
        else entry.buckets.push({ le: bound, value: s.value });
      } else if (s.name === `${family.name}_count`) entry.count = s.value;
      else if (s.name === `${family.name}_sum`) entry.sum = true;
      else add(`sample ${s.name} does not belong to histogram ${family.name}`, s.line);
    }
    for (const [key, entry] of series) {
      const buckets = [...entry.buckets].sort((a, b) => a.le - b.le);
      const inf = buckets.at(-1);
      if (!inf || inf.le !== Number.POSITIVE_INFINITY) add(`series ${key} has no le="+Inf" bucket`);
      if (entry.count === undefined || !entry.sum) add(`series ${key} lacks _count or _sum`);
      if (
        inf &&
        entry.count !== undefined &&
        inf.le === Number.POSITIVE_INFINITY &&
        inf.value !== entry.count
      )
        add(`series ${key}: _count ${entry.count} differs from the +Inf bucket ${inf.value}`);
      for (let i = 1; i < buckets.length; i++) {
        if ((buckets[i]?.value ?? 0) < (buckets[i - 1]?.value ?? 0))
          add(`series ${key}: bucket counts decrease at le=${buckets[i]?.le}`);
      }
    }
  }
  return out;
}

/** The family a sample belongs to: `x` for `x_bucket`/`x_count`/`x_sum` of a histogram or summary `x`. */
function familyNameOf(sampleName: string, families: Map<string, ExpositionFamily>): string {
  const m = /^(.*)_(bucket|count|sum)$/.exec(sampleName);
  if (m) {
    const base = families.get(m[1] as string);
    if (base && (base.type === "histogram" || (base.type === "summary" && m[2] !== "bucket")))
      return base.name;
  }
  return sampleName;
}

function parseSampleLine(
  line: string,
  lineNo: number,
  problems: ExpositionProblem[],
): ExpositionSample | undefined {
  const nameMatch = /^[^\s{]+/.exec(line);
  const name = nameMatch?.[0] ?? "";
  const fail = (text: string): undefined => {
    problems.push({ metric: name || line, line: lineNo, text });
    return undefined;
  };
  if (!METRIC_NAME.test(name)) return fail("invalid metric name");
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i += 1;
    for (;;) {
      while (line[i] === " ") i += 1;
      if (line[i] === "}") {
        i += 1;
        break;
      }
      const labelMatch = /^[^=\s]+/.exec(line.slice(i));
      const label = labelMatch?.[0] ?? "";
      if (!LABEL_NAME.test(label)) return fail(`invalid label name "${label}"`);
      if (label.startsWith("__")) return fail(`label name "${label}" is reserved`);
      i += label.length;
      if (line[i] !== "=" || line[i + 1] !== '"') return fail(`label ${label} has no quoted value`);
      i += 2;
      let value = "";
      for (;;) {
        const c = line[i];
        if (c === undefined) return fail(`label ${label} has an unterminated value`);
        if (c === "\\") {
          const next = line[i + 1];
          if (next === "n") value += "\n";
          else if (next === "\\" || next === '"') value += next;
          else return fail(`label ${label} has an invalid escape \\${next ?? ""}`);
          i += 2;
          continue;
        }
        if (c === '"') {
          i += 1;
          break;
        }
        value += c;
        i += 1;
      }
      if (Object.hasOwn(labels, label)) return fail(`duplicate label name "${label}"`);
      labels[label] = value;
      while (line[i] === " ") i += 1;
      if (line[i] === ",") i += 1;
      else if (line[i] !== "}") return fail("labels are not separated by commas");
    }
  }
  const rest = line.slice(i).trim().split(/\s+/);
  if (rest.length < 1 || rest.length > 2 || rest[0] === "")
    return fail("a sample needs a value and at most a timestamp");
  const value = parseFloatToken(rest[0] as string);
  if (Number.isNaN(value) && !/^nan$/i.test(rest[0] as string)) return fail(`invalid value "${rest[0]}"`);
  if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) return fail(`invalid timestamp "${rest[1]}"`);
  return { name, labels, value, line: lineNo };
}

function parseFloatToken(token: string): number {
  if (!FLOAT.test(token)) return Number.NaN;
  if (/^[+-]?inf(inity)?$/i.test(token))
    return token.startsWith("-") ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  return Number(token);
}

function unescapeHelp(text: string): string {
  return text.replace(/\\(n|\\)/g, (_, c: string) => (c === "n" ? "\n" : "\\"));
}
