import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterSlot, createRedis, shardPrefixes } from "@agentry/core";
import { startRedisCluster, type TestRedisCluster } from "@agentry/testkit";
import {
  SHARDS,
  anchorCoversEveryShard,
  approvalOnAShardResumes,
  cancelAndStatusOnAShard,
  globalBudgetHoldsAcrossShards,
  manySessionsCompleteInOrder,
  startShardedDeployment,
  tenantCapHoldsAcrossShards,
  type ShardedDeployment,
} from "./sharded-deployment.js";

// AGENTRY_SHARDS=3 on a three-master Redis Cluster started by the test, with three worker
// processes: each shard's hash tag puts its keys on its own master; budgets and tenant settings
// stay on the base prefix's slot.
const PREFIX = "{agentry-sh}";
let cluster: TestRedisCluster;
let d: ShardedDeployment;
beforeAll(async () => {
  cluster = await startRedisCluster({ nodes: 3 });
  d = await startShardedDeployment(cluster.url, PREFIX);
}, 150_000);
afterAll(async () => {
  await d?.close();
  await cluster?.stop();
});

describe("queue shards on a three-master Redis Cluster", () => {
  it("puts each shard on its own master, as the cluster itself hashes the keys", async () => {
    const redis = createRedis({ url: cluster.url, role: "command" });
    try {
      const slots = (await redis.cluster("SLOTS")) as unknown as [number, number, [string, number]][];
      const masterOf = (slot: number) => {
        const range = slots.find(([from, to]) => slot >= from && slot <= to);
        return range ? `${range[2][0]}:${range[2][1]}` : "none";
      };
      const prefixes = shardPrefixes(PREFIX, SHARDS);
      const masters = [];
      for (const p of prefixes) {
        const slot = Number(await redis.call("CLUSTER", "KEYSLOT", `${p}:tasks:wait`));
        expect(slot).toBe(clusterSlot(`${p}:tasks:wait`));
        masters.push(masterOf(slot));
      }
      expect(new Set(masters).size).toBe(SHARDS);
    } finally {
      redis.disconnect();
    }
  });
  it(
    "completes tasks of many sessions once each, spread over every shard, in session order",
    () => manySessionsCompleteInOrder(d),
    240_000,
  );
  it("resumes a task whose approval was decided on shard 1", () => approvalOnAShardResumes(d), 120_000);
  it(
    "finds a task's status and cancels it on its shard; an idempotent resubmit dedupes across shards",
    () => cancelAndStatusOnAShard(d),
    120_000,
  );
  it("holds a tenant's maxRunning across shards", () => tenantCapHoldsAcrossShards(d), 180_000);
  it(
    "keeps one global budget exact with no overshoot under contention from every shard",
    () => globalBudgetHoldsAcrossShards(d),
    240_000,
  );
  it(
    "anchors every shard's chain in one line and verifies them all",
    () => anchorCoversEveryShard(d),
    60_000,
  );
});
