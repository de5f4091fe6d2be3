export {
  startRedisServer,
  obtainTestRedis,
  startRedisContainer,
  TEST_REDIS_IMAGE,
  redisAnswers,
  freePort,
  hasRedisServerBinary,
  type TestRedisServer,
  type StartRedisServerOptions,
  type ObtainTestRedisInternals,
} from "./redis/redis-server.js";
export { createTestRedis, useTestRedis, testRedisUrl, type TestRedis } from "./redis/test-redis.js";
export {
  startFakeAnthropic,
  fakeReply,
  fakeTextTokens,
  fakePromptTokens,
  fakeOutputTokens,
  parseFakeAnthropicArgs,
  FAKE_TOOL_PROMPT_TOKENS,
  type FakeAnthropic,
  type FakeBilling,
  type FakeSentEvent,
  type StartFakeAnthropicOptions,
  type FakeReply,
  type FakeStep,
  type FakeMessageReply,
  type FakeErrorReply,
  type FakeMalformedReply,
  type FakeDropReply,
  type FakeStreamOptions,
  type FakeContentBlock,
  type FakeUsage,
  type RecordedRequest,
  type WireRequest,
  type WireBlock,
  type WireTool,
} from "./anthropic/fake-anthropic.js";
export { startRedisCluster, useRedisCluster, type TestRedisCluster } from "./redis/redis-cluster.js";
export {
  startOtlpReceiver,
  decodeTraceExport,
  ancestorsOf,
  OTLP_SPAN_KIND,
  type OtlpReceiver,
  type OtlpRequest,
  type OtlpValue,
  type ReceivedSpan,
} from "./otlp/otlp-receiver.js";
export {
  startRedisSentinel,
  useRedisSentinel,
  type SentinelOptions,
  type TestRedisSentinel,
} from "./redis/redis-sentinel.js";
export {
  startRedisReplicated,
  useRedisReplicated,
  type RedisReplicatedFixture,
  type TestRedisReplicated,
} from "./redis/redis-replicas.js";
