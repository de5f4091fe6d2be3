import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterSlot, createRedis, shardPrefixes } from "@agentry/core";
import { startRedisCluster, type TestRedisCluster } from "@agentry/testkit";
import {
  SHARDS,
  itRunsTheShardedScenario,
  startShardedDeployment,
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
  itRunsTheShardedScenario(() => d, { manySessionsTimeoutMs: 240_000 });
});
