export { sessionStoreConformance, type SessionStoreFactory } from "./sessions/session-store.conformance.js";
export { sessionTurnsConformance, type SessionTurnsFactory } from "./turns/session-turns.conformance.js";
export { vectorMemoryConformance, type VectorMemoryFactory } from "./vector/vector-memory.conformance.js";
