import { afterAll, beforeAll, describe, it } from "vitest";
import { useTestRedis } from "@agentry/testkit";
import {
  anchorCoversEveryShard,
  approvalOnAShardResumes,
  cancelAndStatusOnAShard,
  globalBudgetHoldsAcrossShards,
  manySessionsCompleteInOrder,
  startShardedDeployment,
  tenantCapHoldsAcrossShards,
  type ShardedDeployment,
} from "./sharded-deployment.js";

// AGENTRY_SHARDS=3 on one Redis server: sharding needs no Cluster (the shards are prefixes
// `<prefix>:s0..2`). The same scenario runs on a three-master Cluster in cluster-shards.test.ts.
const redis = useTestRedis("shards");
let d: ShardedDeployment;
beforeAll(async () => {
  d = await startShardedDeployment(redis.url, redis.freshPrefix("shards"));
}, 90_000);
afterAll(async () => {
  await d?.close();
});

describe("queue shards on one Redis server", () => {
  it(
    "completes tasks of many sessions once each, spread over every shard, in session order",
    () => manySessionsCompleteInOrder(d),
    180_000,
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
