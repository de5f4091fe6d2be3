import { describe, expect, it } from "vitest";
import { lintExposition, parseExposition } from "./lint-exposition.js";

/** The problem texts of an exposition, as `metric: text`. */
function problems(text: string): string[] {
  return lintExposition(text).map((p) => `${p.metric}: ${p.text}`);
}

const clean = `# HELP app_requests_total Requests served.
# TYPE app_requests_total counter
app_requests_total{route="/a",code="200"} 3
app_requests_total{route="/b",code="500"} 0
# HELP app_request_duration_seconds Time to answer.
# TYPE app_request_duration_seconds histogram
app_request_duration_seconds_bucket{le="0.1"} 1
app_request_duration_seconds_bucket{le="1"} 2
app_request_duration_seconds_bucket{le="+Inf"} 3
app_request_duration_seconds_sum 2.5
app_request_duration_seconds_count 3
# HELP app_budget_remaining_usd Dollars left, with an escaped \\\\ and a \\n newline.
# TYPE app_budget_remaining_usd gauge
app_budget_remaining_usd{scope="tenant:a\\"b"} 1.5e-3
app_budget_remaining_usd{scope="global"} NaN
# HELP app_spend_tokens_total Tokens spent.
# TYPE app_spend_tokens_total counter
app_spend_tokens_total 12 1700000000000
`;

describe("lintExposition", () => {
  it("accepts a clean exposition and reads its values, labels and escapes", () => {
    expect(problems(clean)).toEqual([]);
    const { families } = parseExposition(clean);
    expect(families.map((f) => `${f.name}:${f.type}`)).toEqual([
      "app_requests_total:counter",
      "app_request_duration_seconds:histogram",
      "app_budget_remaining_usd:gauge",
      "app_spend_tokens_total:counter",
    ]);
    const gauge = families[2]!;
    expect(gauge.help).toBe("Dollars left, with an escaped \\ and a \n newline.");
    expect(gauge.samples[0]).toMatchObject({ labels: { scope: 'tenant:a"b' }, value: 0.0015 });
  });

  it("reports the promtool lint rules", () => {
    const text = `# TYPE api_calls counter
api_calls 1
# HELP open_total Open things.
# TYPE open_total gauge
open_total 2
# HELP latency_milliseconds Latency.
# TYPE latency_milliseconds gauge
latency_milliseconds 3
# HELP size_mb Size.
# TYPE size_mb gauge
size_mb 4
# HELP jobs_gauge Jobs.
# TYPE jobs_gauge gauge
jobs_gauge 5
# HELP queue:depth Depth.
# TYPE queue:depth gauge
queue:depth 6
# HELP queueDepth Depth.
# TYPE queueDepth gauge
queueDepth{jobState="x"} 7
# HELP hits_count Hits.
# TYPE hits_count gauge
hits_count{le="1"} 8
`;
    expect(problems(text)).toEqual(
      expect.arrayContaining([
        "api_calls: no help text",
        'api_calls: counter metrics should have "_total" suffix',
        'open_total: non-counter metrics should not have "_total" suffix',
        'latency_milliseconds: use base unit "seconds" instead of "milliseconds"',
        "size_mb: metric names should not contain abbreviated units",
        "jobs_gauge: metric name should not include type 'gauge'",
        "queue:depth: metric names should not contain ':'",
        "queueDepth: metric names should be written in 'snake_case' not 'camelCase'",
        "queueDepth: label names should be written in 'snake_case' not 'camelCase' (jobState)",
        'hits_count: non-histogram and non-summary metrics should not have "_count" suffix',
        'hits_count: non-histogram metrics should not have "le" label',
      ]),
    );
  });

  it("holds one base unit per metric, named last, and no unit label", () => {
    const text = `# HELP cost_micro_usd_total Cost.
# TYPE cost_micro_usd_total counter
cost_micro_usd_total 1
# HELP budget_remaining Left.
# TYPE budget_remaining gauge
budget_remaining{unit="tokens"} 2
# HELP spend_tokens_usd Mixed.
# TYPE spend_tokens_usd gauge
spend_tokens_usd 3
# HELP wait_seconds_max Unit not last.
# TYPE wait_seconds_max gauge
wait_seconds_max 4
# HELP price_cents Cents.
# TYPE price_cents gauge
price_cents 5
`;
    expect(problems(text)).toEqual([
      'cost_micro_usd_total: use base unit "usd" instead of "micro_usd"',
      'budget_remaining: a "unit" label mixes units in one metric: put the unit in the name, one metric per unit',
      "spend_tokens_usd: one unit per metric: the name mixes tokens and usd",
      'wait_seconds_max: the unit "seconds" should end the name (before "_total" on a counter)',
      'price_cents: use base unit "usd" instead of "cents"',
    ]);
  });

  it("rejects what the text parser rejects: bad names and labels, duplicates, ungrouped and late lines", () => {
    const text = `# HELP a_total A.
# TYPE a_total counter
a_total{x="1"} 1
a_total{x="1"} 2
a_total{x="1",x="2"} 3
a_total{__x="1"} 4
a_total{1x="1"} 5
a_total{x="1} 6
a_total one
# HELP b_total B.
# TYPE b_total counter
b_total 1
a_total{x="3"} 1
# TYPE b_total counter
# TYPE c wibble
`;
    const found = lintExposition(text).map((p) => `${p.line ?? "-"} ${p.metric}: ${p.text}`);
    expect(found).toEqual(
      expect.arrayContaining([
        '4 a_total: duplicate series a_total{x="1"}',
        '5 a_total: duplicate label name "x"',
        '6 a_total: label name "__x" is reserved',
        '7 a_total: invalid label name "1x"',
        "8 a_total: label x has an unterminated value",
        '9 a_total: invalid value "one"',
        "13 a_total: lines of this family are not grouped together",
        "14 b_total: lines of this family are not grouped together",
        "14 b_total: second TYPE line for this metric name",
        "14 b_total: TYPE line after samples of this family",
        '15 c: unknown metric type "wibble"',
      ]),
    );
  });

  it("checks histogram series: +Inf bucket, _count equal to it, counts that never decrease", () => {
    const text = `# HELP d_seconds D.
# TYPE d_seconds histogram
d_seconds_bucket{op="a",le="1"} 5
d_seconds_bucket{op="a",le="2"} 4
d_seconds_bucket{op="a",le="+Inf"} 6
d_seconds_sum{op="a"} 1
d_seconds_count{op="a"} 7
d_seconds_bucket{op="b",le="1"} 1
d_seconds_sum{op="b"} 1
d_seconds_count{op="b"} 1
`;
    expect(problems(text)).toEqual([
      'd_seconds: series [["op","a"]]: _count 7 differs from the +Inf bucket 6',
      'd_seconds: series [["op","a"]]: bucket counts decrease at le=2',
      'd_seconds: series [["op","b"]] has no le="+Inf" bucket',
    ]);
  });
});
