import type { TestProject } from "vitest/node";
import { obtainTestRedis } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/** vitest globalSetup: one Redis per test run, its URL provided as `redisUrl`. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await obtainTestRedis();
  project.provide("redisUrl", server.url);
  return () => server.stop();
}
