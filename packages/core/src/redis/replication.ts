import type { Redis } from "ioredis";
import { AgentryError } from "../errors/agentry-error.js";

/** What {@link awaitReplicas} found. */
export interface Replication {
  /** Whether `key` exists on the master the `WAIT` went to. */
  held: boolean;
  /** Replicas that acknowledged every write that master took before the `WAIT`. */
  acked: number;
}

/**
 * Redis `WAIT` for a write just made on `redis`: `replicas` replicas, at most `timeoutMs`.
 * `WAIT` covers the writes of its own connection up to it, so it goes on the connection that
 * wrote, in one pipeline with an `EXISTS key` (and, with `probe`, a short-lived write to that
 * key first, for a write another connection made: the master replicates in order, so whatever
 * it took before the probe is covered too). A Cluster client sends the pipeline to the master of
 * `key`'s slot (a `WAIT` alone would go to any node); `held` false says that master does not
 * have the key: the slot moved to a replica that never got it.
 */
export async function awaitReplicas(
  redis: Redis,
  options: { key: string; replicas: number; timeoutMs: number; probe?: string },
): Promise<Replication> {
  const pipeline = redis.pipeline().exists(options.key);
  if (options.probe !== undefined) pipeline.set(options.probe, "1", "PX", 60_000);
  const replies = (await pipeline.call("WAIT", options.replicas, options.timeoutMs).exec()) ?? [];
  const values = replies.map(([err, value]) => {
    if (err) throw AgentryError.from(err);
    return value;
  });
  return { held: values[0] === 1, acked: Number(values.at(-1)) };
}
