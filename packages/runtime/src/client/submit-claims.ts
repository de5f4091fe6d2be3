import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { AgentryError, defineScripts, keySpace } from "@agentry/core";
import { jobOptionsFor } from "../tasks/catalog.js";

const scripts = defineScripts<{
  swapSubmitClaim: (
    keys: [claim: string],
    args: [expected: string, next: string, ttlMs: number],
  ) => [1] | [0, string?];
}>(import.meta.url, { swapSubmitClaim: "swap-submit-claim-1.lua" });

/** How long a claim lives before its submit enqueues: longer than any enqueue (four commands, 5 s timeout each). */
const PENDING_MS = 30_000;
/** A claim of an enqueued task lives as long as the completed job it points to. */
const ENQUEUED_MS = jobOptionsFor("agent.run").removeOnComplete.age * 1_000;
/** How often a submit that met a pending claim looks for its job again. */
const POLL_MS = 20;

/** What a claim holds: the shard of its task, the tenant, and which submit took it. */
interface ClaimValue {
  state: "pending" | "enqueued";
  shard: number;
  tenant: string;
  owner: string;
}

/** A claim this submit holds: it enqueues on the claim's shard, then commits or releases it. */
export interface HeldClaim {
  /** The task is enqueued: the claim now points at its shard for the retention of completed jobs. */
  commit(): Promise<void>;
  /** The enqueue failed: the claim goes, so the next submit of the key can enqueue. */
  release(): Promise<void>;
}

/** The outcome of {@link SubmitClaims.take}: this submit enqueues, or another one's job is there. */
export type ClaimOutcome<J> =
  { type: "claimed"; claim: HeldClaim } | { type: "found"; job: J; shard: number };

/**
 * Claims of idempotent submits on the global slot.
 *
 * A keyed submit's task id comes from (tenant, key) but its shard from (tenant, session), so two
 * concurrent submits of one key naming different sessions route to different shards, where
 * BullMQ's job id cannot see both; and on one shard BullMQ's add of an id already there returns
 * as if it had added it, so both callers would be told they created the task. Before
 * enqueueing, a submit takes the claim
 * `<G>:idempotency:<taskId>` (a compare-and-swap from nothing to "pending on shard s"); the one
 * that gets it enqueues, then marks it enqueued (kept 7 days, like completed jobs) or, when the
 * enqueue fails, deletes it. Every other submit reads the claim and waits for the job on the
 * claim's shard: found, it is deduplicated; the claim gone (released) or lapsed, it tries to
 * claim again. An enqueued claim whose job is gone (removed by the completed jobs' count limit)
 * is taken over, as one shard would add a new job once the old one is removed.
 */
export class SubmitClaims {
  readonly #redis: Redis;
  readonly #keys: ReturnType<typeof keySpace>;

  /** `globalPrefix`: the base prefix (`AGENTRY_PREFIX`), whose slot holds the claims. */
  constructor(redis: Redis, globalPrefix: string) {
    this.#redis = redis;
    this.#keys = keySpace(globalPrefix);
  }

  /** The claim key of a task id. */
  key(taskId: string): string {
    return this.#keys.key("idempotency", taskId);
  }

  /**
   * Claims `taskId` for `shard`, or returns the job another submit of the same key enqueued
   * (`jobOn` reads a shard's job). A claim of another tenant is a `CONFLICT`.
   */
  async take<J>(
    taskId: string,
    tenant: string,
    shard: number,
    jobOn: (shard: number) => Promise<J | undefined>,
  ): Promise<ClaimOutcome<J>> {
    const key = this.key(taskId);
    const mine: ClaimValue = { state: "pending", shard, tenant, owner: randomUUID() };
    const pending = JSON.stringify(mine);
    let expected = "";
    for (;;) {
      const [swapped, current] = await scripts.swapSubmitClaim(
        this.#redis,
        [key],
        [expected, pending, PENDING_MS],
      );
      if (swapped === 1) return { type: "claimed", claim: this.#held(key, mine, pending) };
      expected = "";
      if (current === undefined) continue;
      const held = parseClaim(current);
      if (held && held.tenant !== tenant)
        throw new AgentryError("CONFLICT", `Task id ${taskId} is taken; submit with another idempotency key`);
      const job = held ? await jobOn(held.shard) : undefined;
      if (job !== undefined && held) return { type: "found", job, shard: held.shard };
      if (held?.state === "pending") await sleep(POLL_MS);
      // Enqueued, but its job is gone (or the claim is unreadable): take it over.
      else expected = current;
    }
  }

  #held(key: string, mine: ClaimValue, pending: string): HeldClaim {
    const swap = (next: string, ttlMs: number) =>
      scripts.swapSubmitClaim(this.#redis, [key], [pending, next, ttlMs]).then(() => undefined);
    return {
      commit: () => swap(JSON.stringify({ ...mine, state: "enqueued" }), ENQUEUED_MS),
      release: () => swap("", 0),
    };
  }
}

function parseClaim(text: string): ClaimValue | undefined {
  try {
    const value = JSON.parse(text) as Partial<ClaimValue>;
    if (
      (value.state === "pending" || value.state === "enqueued") &&
      Number.isInteger(value.shard) &&
      typeof value.tenant === "string"
    )
      return value as ClaimValue;
  } catch {
    // not a claim this code wrote: taken over below
  }
  return undefined;
}
