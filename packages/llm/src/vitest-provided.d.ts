// The testkit's globalSetup provides `redisUrl`; its declaration lives in a file this
// package's typecheck does not include, so it is repeated here (identical, so it merges).
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}
