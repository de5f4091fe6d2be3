import type { BudgetPeriod } from "./types.js";

/** Label of the UTC period containing `nowMs`: `2026-11-25`, `2026-11`, or `none`. */
export function periodLabel(period: BudgetPeriod, nowMs: number): string {
  if (period === "none") return "none";
  const iso = new Date(nowMs).toISOString();
  return period === "day" ? iso.slice(0, 10) : iso.slice(0, 7);
}
