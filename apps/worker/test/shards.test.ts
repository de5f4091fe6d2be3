import { afterAll, beforeAll, describe } from "vitest";
import { useTestRedis } from "@agentry/testkit";
import {
  itRunsTheShardedScenario,
  startShardedDeployment,
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
  itRunsTheShardedScenario(() => d);
});
