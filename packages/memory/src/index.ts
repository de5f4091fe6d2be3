// Sessions
export type {
  SessionStore,
  SessionStoreOptions,
  CompiledSessionStoreOptions,
} from "./sessions/session-store.js";
export { DEFAULT_SESSION_OPTIONS } from "./sessions/session-store.js";
export {
  compileSessionStoreOptions,
  estimateMessageTokens,
  isTurnStart,
  trimHistory,
} from "./sessions/history.js";
export { RedisSessionStore, type RedisSessionStoreOptions } from "./sessions/redis-session-store.js";
export {
  InMemorySessionStore,
  type InMemorySessionStoreOptions,
} from "./sessions/in-memory-session-store.js";

// Session turns
export type { SessionTurns, SessionLease } from "./turns/session-turns.js";
export { RedisSessionTurns, type RedisSessionTurnsOptions } from "./turns/redis-session-turns.js";
export { InMemorySessionTurns, type InMemorySessionTurnsOptions } from "./turns/in-memory-session-turns.js";

// Embedders
export { normalize, dot, type Embedder } from "./embedding/embedder.js";
export { HashingEmbedder, tokenize, type HashingEmbedderOptions } from "./embedding/hashing-embedder.js";
export { HttpEmbedder, type HttpEmbedderOptions } from "./embedding/http-embedder.js";

// Vector memory
export type {
  VectorMemory,
  MemoryRecord,
  MemoryHit,
  AddMemoryInput,
  SearchMemoryInput,
} from "./vector/vector-memory.js";
export {
  RedisVectorMemory,
  type RedisVectorMemoryOptions,
  type VectorSearchMode,
} from "./vector/redis-vector-memory.js";
export { InMemoryVectorMemory, type InMemoryVectorMemoryOptions } from "./vector/in-memory-vector-memory.js";
export { detectVectorSearch } from "./vector/detect-vector-search.js";
