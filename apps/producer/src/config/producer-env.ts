import { readFileSync } from "node:fs";
import { z } from "zod";
import { AgentryError, envPositiveInt, envVar, parseEnv, parseEnvWith, type AgentryEnv } from "@agentry/core";
import { parseApiKeys, type ApiKeys } from "../auth/api-keys.js";
import { DEFAULT_EVENTS_TOKEN_TTL_MS, MIN_EVENTS_TOKEN_SECRET_LENGTH } from "../auth/events-token.js";
import { DEFAULT_SUBMIT_BURST, DEFAULT_SUBMIT_RATE } from "../rate-limit/submit-rate-limiter.js";

/**
 * The producer's own environment, on top of the shared contract (`parseEnv` of @agentry/core):
 *
 * - `PORT` (8080), `HOST` (0.0.0.0): where the HTTP API listens.
 * - `AGENTRY_API_KEYS`: `key1=tenantA,key2=tenantB`; `key=tenant+admin` marks an admin key
 *   (full Bull Board; other keys see it read-only).
 * - `AGENTRY_API_KEYS_FILE`: a file with the same entries one per line (`#` comments), or JSON
 *   (`{"key": "tenant"}` or `[{"key", "tenant", "name"?, "admin"?}]`). Both variables may be set.
 * - `AGENTRY_BODY_LIMIT_BYTES` (1048576): larger bodies answer 413.
 * - `AGENTRY_SUBMIT_RATE` (10): tasks per second each tenant may submit, sustained (fractions
 *   allowed; 0 turns the limit off); `AGENTRY_SUBMIT_BURST` (100): tasks a tenant may submit at
 *   once after being idle. A group counts each of its tasks. Over the limit → 429 `RATE_LIMITED`
 *   with `Retry-After`. Shared through Redis by every producer replica.
 * - `AGENTRY_EVENTS_TOKEN_SECRET` (unset): signs the browser tokens of event streams; at least 32
 *   characters, the same on every replica. Unset: a random secret per process (a warning at
 *   start), so a token works only on the replica that minted it.
 * - `AGENTRY_EVENTS_TOKEN_TTL_SECONDS` (600): how long such a token is accepted.
 * - `AGENTRY_INSECURE_DEV_KEY` (off): `1` lets a producer with no key configured accept the
 *   well-known admin key `dev-key` (tenant `default`); for a private development run only.
 *
 * With no key configured (an empty variable or file counts as none), or with `dev-key` configured
 * by hand, the producer refuses to start, unless `AGENTRY_INSECURE_DEV_KEY=1`; it then warns
 * loudly at start.
 */
export const producerEnvSchema = z.object({
  PORT: envVar(z.coerce.number().int().min(0).max(65_535).default(8080)),
  HOST: envVar(z.string().min(1).default("0.0.0.0")),
  AGENTRY_API_KEYS: envVar(z.string().optional()),
  AGENTRY_API_KEYS_FILE: envVar(z.string().optional()),
  AGENTRY_BODY_LIMIT_BYTES: envPositiveInt(1024 * 1024),
  AGENTRY_SUBMIT_RATE: envVar(z.coerce.number().finite().nonnegative().default(DEFAULT_SUBMIT_RATE)),
  AGENTRY_SUBMIT_BURST: envPositiveInt(DEFAULT_SUBMIT_BURST),
  AGENTRY_EVENTS_TOKEN_SECRET: envVar(z.string().min(MIN_EVENTS_TOKEN_SECRET_LENGTH).optional()),
  AGENTRY_EVENTS_TOKEN_TTL_SECONDS: envVar(
    z.coerce
      .number()
      .int()
      .min(1)
      .max(86_400)
      .default(DEFAULT_EVENTS_TOKEN_TTL_MS / 1000),
  ),
  // A closed set of spellings: `yes` or `on` must not be read as "off" by one reader and "on" by another.
  AGENTRY_INSECURE_DEV_KEY: envVar(
    z
      .enum(["1", "true", "0", "false"], { message: "must be 1, true, 0 or false" })
      .default("0")
      .transform((v) => v === "1" || v === "true"),
  ),
});

/** The parsed environment of the producer. */
export type ProducerEnv = AgentryEnv & z.infer<typeof producerEnvSchema>;

/** Parses the environment once, at the app's edge. Throws `INVALID_CONFIG` naming every bad variable. */
export function parseProducerEnv(env: NodeJS.ProcessEnv = process.env): ProducerEnv {
  return { ...parseEnv(env), ...parseEnvWith(producerEnvSchema, env) };
}

/** The well-known key accepted when none is configured and `AGENTRY_INSECURE_DEV_KEY=1` (tenant `default`, admin). */
export const DEV_API_KEY = "dev-key";

/** Why a producer without keys does not start; names the way out. */
export const NO_API_KEYS_MESSAGE =
  "no API keys configured: set AGENTRY_API_KEYS (key=tenant,...) or AGENTRY_API_KEYS_FILE; " +
  `for a private development run only, AGENTRY_INSECURE_DEV_KEY=1 accepts the well-known admin key \`${DEV_API_KEY}\``;

/** API keys loaded from the environment. */
export interface LoadedApiKeys {
  keys: ApiKeys;
  /** True when nothing was configured and only {@link DEV_API_KEY} is accepted (`AGENTRY_INSECURE_DEV_KEY=1`). */
  devDefault: boolean;
}

/**
 * Reads the API keys from `AGENTRY_API_KEYS_FILE` and `AGENTRY_API_KEYS`. Throws `INVALID_CONFIG`
 * when neither yields a key (an empty variable, or a file of comments, counts as none) or when
 * {@link DEV_API_KEY} is among them, unless `AGENTRY_INSECURE_DEV_KEY` is on: a producer must not
 * quietly accept a key printed in the documentation.
 */
export function loadApiKeys(
  env: Pick<ProducerEnv, "AGENTRY_API_KEYS" | "AGENTRY_API_KEYS_FILE"> & {
    AGENTRY_INSECURE_DEV_KEY?: boolean;
  },
  readFile: (path: string) => string = (path) => readFileSync(path, "utf8"),
): LoadedApiKeys {
  const keys: ApiKeys = new Map();
  const merge = (more: ApiKeys, source: string) => {
    for (const [key, grant] of more) {
      if (keys.has(key)) throw new AgentryError("INVALID_CONFIG", `${source}: a key is configured twice`);
      keys.set(key, grant);
    }
  };
  if (env.AGENTRY_API_KEYS_FILE) {
    let text: string;
    try {
      text = readFile(env.AGENTRY_API_KEYS_FILE);
    } catch (err) {
      throw new AgentryError(
        "INVALID_CONFIG",
        `AGENTRY_API_KEYS_FILE: cannot read ${env.AGENTRY_API_KEYS_FILE}`,
        { cause: err },
      );
    }
    merge(parseApiKeys(text, "AGENTRY_API_KEYS_FILE"), "AGENTRY_API_KEYS_FILE");
  }
  if (env.AGENTRY_API_KEYS) merge(parseApiKeys(env.AGENTRY_API_KEYS, "AGENTRY_API_KEYS"), "AGENTRY_API_KEYS");
  // The documented key is as good as public: configuring it by hand is as insecure as no key.
  if (keys.has(DEV_API_KEY) && env.AGENTRY_INSECURE_DEV_KEY !== true) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `the well-known key \`${DEV_API_KEY}\` is configured; choose real keys, or set AGENTRY_INSECURE_DEV_KEY=1 for a private development run`,
    );
  }
  if (keys.size > 0) return { keys, devDefault: false };
  if (env.AGENTRY_INSECURE_DEV_KEY !== true) throw new AgentryError("INVALID_CONFIG", NO_API_KEYS_MESSAGE);
  return {
    keys: new Map([[DEV_API_KEY, { tenant: "default", name: DEV_API_KEY, admin: true }]]),
    devDefault: true,
  };
}
