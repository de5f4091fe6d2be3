export {
  startRedisServer,
  obtainTestRedis,
  redisAnswers,
  freePort,
  hasRedisServerBinary,
  type TestRedisServer,
  type StartRedisServerOptions,
} from "./redis/redis-server.js";
export { createTestRedis, useTestRedis, testRedisUrl, type TestRedis } from "./redis/test-redis.js";
