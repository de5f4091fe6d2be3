import type { Redis } from "ioredis";
import {
  AgentryError,
  DEFAULT_KEY_PREFIX,
  systemClock,
  withTimeout,
  type Clock,
  type PolicyVerdict,
  type Verdict,
} from "@agentry/core";
import type { Action, Policy, PolicyContext, ValidationResult } from "./types.js";

/** Options for {@link SafetyValidator}. */
export interface SafetyValidatorOptions {
  policies: Policy[];
  /** Longest a single policy may take before it counts as failed (deny). @defaultValue 1000 */
  timeoutMs?: number;
  /** Passed to policies that keep counters (rate caps). */
  redis?: Redis;
  /** Key prefix for policy state. @defaultValue `agentry` */
  prefix?: string;
  /** @defaultValue the system clock */
  clock?: Clock;
}

/**
 * Runs every policy on an action and merges their verdicts: deny beats require_approval beats
 * allow. Several approvals merge into one (union of approvers, highest quorum, shortest TTL,
 * reasons joined). A policy that throws or exceeds `timeoutMs` denies with
 * `policy <name> failed: ...` (fail closed). Policies run concurrently.
 */
export class SafetyValidator {
  readonly policies: readonly Policy[];
  private readonly timeoutMs: number;
  private readonly redis: Redis | undefined;
  private readonly prefix: string;
  private readonly clock: Clock;

  constructor(opts: SafetyValidatorOptions) {
    const names = new Set<string>();
    for (const p of opts.policies) {
      if (names.has(p.name)) throw new AgentryError("INVALID_CONFIG", `Duplicate policy name "${p.name}"`);
      names.add(p.name);
    }
    this.policies = [...opts.policies];
    this.timeoutMs = opts.timeoutMs ?? 1_000;
    this.redis = opts.redis;
    this.prefix = opts.prefix ?? DEFAULT_KEY_PREFIX;
    this.clock = opts.clock ?? systemClock;
  }

  /**
   * Evaluates every policy. Never throws: failures become denies. `recheck` marks a second
   * judgement of an action already judged (see {@link PolicyContext.recheck}).
   */
  async validate(action: Action, options: { recheck?: boolean } = {}): Promise<ValidationResult> {
    const ctx: PolicyContext = {
      now: this.clock.now(),
      prefix: this.prefix,
      ...(this.redis ? { redis: this.redis } : {}),
      ...(options.recheck ? { recheck: true } : {}),
    };
    const verdicts = await Promise.all(this.policies.map((p) => this.runOne(p, action, ctx)));
    return mergeVerdicts(verdicts);
  }

  private async runOne(policy: Policy, action: Action, ctx: PolicyContext): Promise<PolicyVerdict> {
    try {
      const verdict = await withTimeout(
        Promise.resolve().then(() => policy.evaluate(action, ctx)),
        this.timeoutMs,
      );
      checkVerdict(verdict);
      return { policy: policy.name, verdict };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return {
        policy: policy.name,
        verdict: { type: "deny", reason: `policy ${policy.name} failed: ${message}` },
        error: message,
      };
    }
  }
}

function checkVerdict(v: unknown): asserts v is Verdict {
  const t = (v as { type?: unknown } | null)?.type;
  if (t === "allow") return;
  if (t === "deny" && typeof (v as { reason?: unknown }).reason === "string") return;
  if (t === "require_approval") {
    const a = v as Partial<Extract<Verdict, { type: "require_approval" }>>;
    if (
      Array.isArray(a.approvers) &&
      Number.isInteger(a.quorum) &&
      (a.quorum ?? 0) >= 1 &&
      typeof a.ttlMs === "number" &&
      a.ttlMs > 0
    ) {
      return;
    }
  }
  throw new AgentryError("INVALID_CONFIG", `returned an invalid verdict ${JSON.stringify(v)}`);
}

/** Merges verdicts by precedence (deny > require_approval > allow). Exported for tests and tools. */
export function mergeVerdicts(verdicts: PolicyVerdict[]): ValidationResult {
  const deny = verdicts.find((v) => v.verdict.type === "deny");
  if (deny) return { verdict: deny.verdict, decidedBy: deny.policy, verdicts };
  const approvals = verdicts.filter((v) => v.verdict.type === "require_approval");
  const first = approvals[0];
  if (!first) return { verdict: { type: "allow" }, verdicts };
  const approvers = new Set<string>();
  let quorum = 1;
  let ttlMs = Number.POSITIVE_INFINITY;
  const reasons: string[] = [];
  for (const { verdict } of approvals) {
    if (verdict.type !== "require_approval") continue;
    verdict.approvers.forEach((a) => approvers.add(a));
    quorum = Math.max(quorum, verdict.quorum);
    ttlMs = Math.min(ttlMs, verdict.ttlMs);
    if (!reasons.includes(verdict.reason)) reasons.push(verdict.reason);
  }
  return {
    verdict: {
      type: "require_approval",
      approvers: [...approvers],
      quorum,
      ttlMs,
      reason: reasons.join("; "),
    },
    decidedBy: first.policy,
    verdicts,
  };
}
