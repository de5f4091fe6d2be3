/**
 * Internal. For test use only. One worker-like process of the budget undershoot proof
 * (budget-undershoot.test.ts): concurrent agent runs on the real Anthropic SDK against a fake
 * Messages API that bills code and non-English text above Agentry's estimate, every model call
 * reserved and settled through the budget hooks on shared Redis. Prints one JSON line of figures.
 *
 * Args: <redisUrl> <prefix> <fakeUrl> <seed> <loops> <tasksPerLoop> <scopes, comma-separated>
 * Each task runs on global plus one tenant, and one user and one session of that tenant, from that list.
 */
import { z } from "zod";
import { AgentryError, sleep } from "@agentry/core";
import { ToolRegistry, composeHooks, defineTool, runAgent } from "@agentry/agent";
import { AnthropicModel, costMicroUsd, estimateInputTokens, maxCostMicroUsd } from "@agentry/llm";
import { Redis } from "ioredis";
import { BudgetLedger } from "../budget/ledger.js";
import { budgetScopeKind, parseScope } from "../budget/scope.js";
import { createBudgetHooks } from "./budget-hooks.js";
import { seededRandom } from "../budget/proof-support.js";

/** What the child prints as its last line (read by the proof test). */
export interface UndershootReport {
  tasks: number;
  completed: number;
  exceeded: number;
  contended: number;
  /** Calls settled through the hooks. */
  calls: number;
  /** Settled calls whose billed prompt was above the plain estimate. */
  undershotEstimate: number;
  /** Reservations by where their input figure came from. */
  reservedFromEstimate: number;
  reservedFromCount: number;
  /** Settles the ledger flagged as above their reservation, or whose prompt outran the reserved input. */
  overruns: number;
}

const SNIPPETS = [
  "const total = items.reduce((sum, { price, qty }) => sum + price * qty, 0);",
  "if (!user?.roles?.includes('admin')) { throw new Error(`denied: ${user.id}`); }",
  "for (let i = 0; i < n; i++) { grid[i][j] = (grid[i - 1]?.[j] ?? 0) + 1; }",
  "この関数は合計金額を計算します。税込みの価格を返してください。",
  "데이터베이스 연결이 실패하면 다시 시도하세요.",
  "export type Result<T> = { ok: true; value: T } | { ok: false; error: string };",
];

async function main(): Promise<void> {
  const [url, prefix, fakeUrl, seedText, loopsText, tasksText, scopeText] = process.argv.slice(2);
  if (!url || !prefix || !fakeUrl || !scopeText) {
    throw new Error(
      "usage: budget-undershoot.child.ts <redisUrl> <prefix> <fakeUrl> <seed> <loops> <tasksPerLoop> <scopes>",
    );
  }
  const all = scopeText.split(",").map(parseScope);
  const tenants = all.filter((s) => budgetScopeKind(s) === "tenant").map((s) => s.slice("tenant:".length));
  // Users and sessions are their tenant's: `tenant:<t>:user:<u>` → <u> of tenant <t>.
  const ownedBy = (tenant: string, kind: "user" | "session") =>
    all
      .filter((s) => s.startsWith(`tenant:${tenant}:${kind}:`))
      .map((s) => s.slice(`tenant:${tenant}:${kind}:`.length));
  const random = seededRandom(Number(seedText));
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = (xs: string[]): string => xs[int(0, xs.length - 1)] as string;

  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const ledger = new BudgetLedger({ redis, prefix });
  const model = new AnthropicModel({
    apiKey: "test-key",
    baseURL: fakeUrl,
    defaultModel: "claude-sonnet-4-6",
  });
  const report: UndershootReport = {
    tasks: 0,
    completed: 0,
    exceeded: 0,
    contended: 0,
    calls: 0,
    undershotEstimate: 0,
    reservedFromEstimate: 0,
    reservedFromCount: 0,
    overruns: 0,
  };
  const budget = createBudgetHooks({
    ledger,
    pricing: {
      estimateInputTokens,
      maxCostMicroUsd,
      costMicroUsd,
      countInputTokens: (r) => model.countInputTokens(r),
    },
    defaultModel: model.defaultModel,
    minOutputTokens: 32,
    audit: {
      append: async (entry) => {
        if (entry.type !== "budget") return;
        const { data } = entry;
        if (data["event"] === "reserved") {
          const source = (data["input"] as { source?: string } | undefined)?.source;
          if (source === "count") report.reservedFromCount++;
          else report.reservedFromEstimate++;
        }
        if (
          data["event"] === "settled" &&
          (data["overrun"] === true || data["inputUndershoot"] !== undefined)
        )
          report.overruns++;
      },
    },
  });
  const hooks = composeHooks(budget, {
    afterModelCall: async ({ request, response }) => {
      report.calls++;
      const { input, cacheCreationInput, cacheReadInput } = response.usage;
      if (input + cacheCreationInput + cacheReadInput > estimateInputTokens(request))
        report.undershotEstimate++;
    },
  });
  const tools = new ToolRegistry().register(
    defineTool({
      name: "get_weather",
      description: "Current weather for a city, with a forecast note",
      input: z.object({ city: z.string() }),
      idempotent: true,
      handler: ({ city }) => ({
        city,
        tempC: 18,
        note: `${pick(SNIPPETS)} 明日は晴れ。`,
        raw: "{[()]};=>&&||",
      }),
    }),
  );

  const task = async (taskId: string) => {
    report.tasks++;
    const tenant = pick(tenants);
    const userId = pick(ownedBy(tenant, "user"));
    const sessionId = pick(ownedBy(tenant, "session"));
    const context = Array.from({ length: int(3, 12) }, () => pick(SNIPPETS)).join("\n");
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await runAgent({
          model,
          tools,
          hooks,
          run: { taskId: `${taskId}-a${attempt}`, tenant, userId, sessionId },
          system: "あなたはコードレビューの助手です。Answer briefly.",
          messages: [{ role: "user", content: `What's the weather in Tokyo? Context:\n${context}` }],
          maxTokens: int(64, 256),
        });
        report.completed++;
        return;
      } catch (err) {
        if (AgentryError.isInstance(err) && err.code === "BUDGET_EXCEEDED") {
          report.exceeded++;
          return;
        }
        if (AgentryError.isInstance(err) && err.code === "BUDGET_CONTENDED") {
          report.contended++;
          await sleep(int(1, Math.max(1, Math.min(err.retryAfterMs ?? 20, 50))));
          continue;
        }
        throw err;
      }
    }
  };

  const loop = async (l: number) => {
    for (let i = 0; i < Number(tasksText); i++) await task(`task-${process.pid}-${l}-${i}`);
  };
  await Promise.all(Array.from({ length: Number(loopsText) }, (_, l) => loop(l)));
  await redis.quit();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
