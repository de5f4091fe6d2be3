import type { PolicyVerdict, Verdict } from "@agentry/core";
import type { Redis } from "ioredis";

/**
 * What the agent wants to do: one tool call, with who asked for it. Policies judge what it
 * means, not how it is spelled (see `canonicalText`): `tool` and string values in `input` are
 * compared in canonical form.
 */
export interface Action {
  tool: string;
  input: unknown;
  taskId: string;
  tenant: string;
  userId: string;
  sessionId: string;
  /** Deployment environment the action targets, when known outside the input. */
  env?: string;
  attributes?: Record<string, string>;
  /**
   * The tool declared itself destructive in the registry (`Tool.destructive`). Adds to what the
   * tool's name says; `false` or absent does not make a `drop_table` harmless.
   */
  destructive?: boolean;
}

/** What a policy may use while evaluating. */
export interface PolicyContext {
  /** Milliseconds since the epoch, fixed for one validation. */
  now: number;
  /** For policies that count (rate caps). A policy that needs it and finds none fails closed. */
  redis?: Redis;
  /** Key prefix for policy state in Redis. @defaultValue `agentry` */
  prefix?: string;
  /**
   * True when an action already judged once is judged again (a resumed approval re-derives the
   * bar it must meet): policies that count (rate caps) must not count it a second time.
   */
  recheck?: boolean;
}

/** One safety rule. `evaluate` may throw: the validator then denies (fail closed). */
export interface Policy {
  readonly name: string;
  evaluate(action: Action, ctx: PolicyContext): Promise<Verdict> | Verdict;
}

/** The merged outcome of every policy. */
export interface ValidationResult {
  verdict: Verdict;
  /** The policy whose verdict decided (the first deny, or the first approval); absent for allow. */
  decidedBy?: string;
  verdicts: PolicyVerdict[];
}
