import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createMetrics, registerTenantLoadMetrics } from "@agentry/runtime";

// The dashboard must query only metrics that Agentry documents (packages/runtime/src/metrics/
// README.md) and really exports (createMetrics, and the fair-share gauges the worker registers
// beside them), with labels those metrics carry.

const repo = fileURLToPath(new URL("../../", import.meta.url));
const readme = readFileSync(join(repo, "packages/runtime/src/metrics/README.md"), "utf8");

interface Target {
  expr: string;
  refId: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
const dashboard = JSON.parse(readFileSync(join(repo, "infra/grafana/agentry-dashboard.json"), "utf8")) as {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = panels.filter((p) => p.type !== "row");
const exprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

/** The README's metric table: name → { type, labels }. */
const documented = new Map(
  [...readme.matchAll(/^\| `([a-z_:][a-z0-9_:]*)` +\| (\w+) +\| ([^|]*) \|/gm)].map((m) => [
    m[1] as string,
    { type: m[2] as string, labels: [...(m[3] as string).matchAll(/`(\w+)`/g)].map((l) => l[1] as string) },
  ]),
);
/** Other metric names the README mentions in backticks (prom-client's process metrics). */
const mentioned = new Set(
  [...readme.matchAll(/`([a-z_]+_(?:total|bytes|seconds))`/g)].map((m) => m[1] as string),
);

const PROMQL_WORDS = new Set([
  "sum",
  "max",
  "min",
  "avg",
  "count",
  "by",
  "without",
  "rate",
  "irate",
  "increase",
  "histogram_quantile",
  "topk",
  "bottomk",
  "offset",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "clamp_min",
  "clamp_max",
  "abs",
  "label_values",
]);
/** Labels every scraped series may carry besides its own: Prometheus target labels and Agentry's default `service`. */
const COMMON_LABELS = new Set(["instance", "job", "service"]);

/** Metric names and the labels each is grouped or filtered by, from one PromQL expression. */
function parse(expr: string): { metric: string; labels: string[] }[] {
  const byLabels = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
    (m[1] as string)
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );
  const stripped = expr
    .replace(/\b(?:by|without)\s*\([^)]*\)/g, " ")
    .replace(/"[^"]*"/g, " ")
    .replace(/\[[^\]]*\]/g, " ");
  const out: { metric: string; labels: string[] }[] = [];
  for (const m of stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?/g)) {
    const word = m[1] as string;
    if (PROMQL_WORDS.has(word) || /^\d/.test(word) || /^e\d+$/.test(word)) continue;
    const selectorLabels = [...(m[2] ?? "").matchAll(/(\w+)\s*=~?/g)].map((l) => l[1] as string);
    out.push({ metric: word, labels: [...selectorLabels, ...byLabels] });
  }
  return out;
}

/** `x_bucket` of a documented histogram `x` is `x`. */
function baseName(metric: string): string {
  const m = /^(.*)_(bucket|sum|count)$/.exec(metric);
  if (m && documented.get(m[1] as string)?.type === "histogram") return m[1] as string;
  return metric;
}

describe("infra/grafana/agentry-dashboard.json", () => {
  it("is a Grafana dashboard with unique panel ids and a Prometheus datasource variable", () => {
    expect(dashboard.uid).toBe("agentry-overview");
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    expect(dashboard.templating.list.find((v) => v.name === "datasource")).toMatchObject({
      type: "datasource",
      query: "prometheus",
    });
    for (const p of queryPanels) {
      expect(p.datasource?.uid, p.title).toBe("${datasource}");
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
    expect(documented.size).toBeGreaterThan(5);
  });

  it("queries only metrics documented in packages/runtime/src/metrics/README.md", () => {
    const used = exprs.flatMap(parse);
    expect(used.length).toBeGreaterThan(0);
    for (const { metric } of used) {
      const name = baseName(metric);
      expect(documented.has(name) || mentioned.has(name), `${metric} is not in the metrics README`).toBe(
        true,
      );
    }
  });

  it("groups and filters each Agentry metric only by labels it has", () => {
    for (const expr of exprs) {
      for (const { metric, labels } of parse(expr)) {
        const doc = documented.get(baseName(metric));
        if (!doc) continue;
        const allowed = new Set([
          ...doc.labels,
          ...COMMON_LABELS,
          ...(doc.type === "histogram" ? ["le"] : []),
        ]);
        for (const label of labels)
          expect(allowed.has(label), `${expr}: ${metric} has no label ${label}`).toBe(true);
      }
    }
  });

  it("covers tasks by outcome, durations, tokens and cost per tenant, budgets, approvals, queue depth and tenants' running and waiting tasks", () => {
    const names = new Set(exprs.flatMap(parse).map((u) => baseName(u.metric)));
    for (const required of [
      "agentry_tasks_total",
      "agentry_task_duration_seconds",
      "agentry_model_call_duration_seconds",
      "agentry_tokens_total",
      "agentry_cost_usd_total",
      "agentry_budget_remaining_usd",
      "agentry_budget_remaining_tokens",
      "agentry_approvals_pending",
      "agentry_queue_depth",
      "agentry_tenant_running_tasks",
      "agentry_tenant_waiting_tasks",
    ]) {
      expect(names, required).toContain(required);
    }
    expect(
      exprs.some((e) => /agentry_cost_usd_total\{tenant=~"\$tenant"\}/.test(e) && /by \(tenant\)/.test(e)),
    ).toBe(true);
    // Metrics carry base units: no panel rescales a cost or a budget.
    expect(exprs.filter((e) => /1e6|1000000/.test(e))).toEqual([]);
  });

  it("every Agentry metric it queries is really exported by createMetrics() or registerTenantLoadMetrics(), as the worker wires them", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    registerTenantLoadMetrics(metrics.registry, {
      read: async () => [{ tenant: "acme", running: 1, waiting: 2, maxRunning: 4, weight: 1 }],
    });
    const text = await metrics.metricsText();
    const names = new Set(
      exprs
        .flatMap(parse)
        .map((u) => baseName(u.metric))
        .filter((n) => n.startsWith("agentry_")),
    );
    for (const name of names) expect(text, name).toContain(`# TYPE ${name} `);
  });
});
