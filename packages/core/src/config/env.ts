import { z } from "zod";
import { AgentryError } from "../errors/agentry-error.js";
import { DEFAULT_REDIS_URL } from "../redis/connection.js";
import { DEFAULT_KEY_PREFIX } from "../redis/keys.js";
import { parseRedisTarget } from "../redis/connection.js";
import { MAX_AUDIT_LANES, MAX_SHARDS, checkClusterPrefix } from "../redis/shards.js";

const emptyToUndefined = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);

/** An environment variable read with `schema`, an empty or blank value counting as unset (its default applies). */
export function envVar<T extends z.ZodType>(schema: T) {
  return z.preprocess(emptyToUndefined, schema);
}

/** A positive integer variable; unset or blank gives `defaultValue`. */
export function envPositiveInt(defaultValue: number) {
  return envVar(z.coerce.number().int().positive().default(defaultValue));
}

/** A non-negative integer variable (0 usually turns something off); unset or blank gives `defaultValue`. */
export function envNonNegativeInt(defaultValue: number) {
  return envVar(z.coerce.number().int().nonnegative().default(defaultValue));
}

const optionalString = envVar(z.string().optional());

/** The environment contract of every Agentry app (README "Configuration", docs/architecture.md). */
export const agentryEnvSchema = z.object({
  REDIS_URL: envVar(
    z
      .string()
      .regex(
        /^rediss?(\+cluster|\+sentinel)?:\/\/\S+$/,
        "must be redis://, rediss://, redis+cluster:// or redis+sentinel:// followed by host:port",
      )
      .default(DEFAULT_REDIS_URL),
  ),
  AGENTRY_PREFIX: envVar(z.string().min(1).default(DEFAULT_KEY_PREFIX)),
  AGENTRY_LLM: envVar(z.enum(["anthropic", "scripted"]).optional()),
  AGENTRY_MODEL: optionalString,
  ANTHROPIC_API_KEY: optionalString,
  ANTHROPIC_BASE_URL: optionalString,
  AGENTRY_CONCURRENCY: envPositiveInt(4),
  AGENTRY_POLICY_FILE: optionalString,
  AGENTRY_APPROVERS_FILE: optionalString,
  /** OTLP HTTP base URL; traces go to `<endpoint>/v1/traces`. */
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalString,
  /** OTLP HTTP URL for traces, used as is; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalString,
  /** Secret that authenticates audit entries (HMAC); every writer and verifier holds it, Redis does not. */
  AGENTRY_AUDIT_KEY: envVar(z.string().min(32, "must be at least 32 characters").optional()),
  /** Retired audit keys, comma separated: verifiers accept entries written under them after a rotation. */
  AGENTRY_AUDIT_PREVIOUS_KEYS: z.preprocess(
    (v) =>
      typeof v === "string"
        ? v
            .split(",")
            .map((k) => k.trim())
            .filter((k) => k !== "")
        : v,
    z.array(z.string().min(32, "every key must be at least 32 characters")).default([]),
  ),
  LOG_LEVEL: envVar(z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info")),
  /**
   * Fair share between tenants in the order tasks are taken: `on` (each tenant's next task
   * competes with the other tenants' next tasks) or `off` (first in first out). Read where tasks
   * are submitted (producer, CLI); tenants' `maxRunning` caps hold either way.
   */
  AGENTRY_FAIR_SHARE: envVar(z.enum(["on", "off"]).default("on")),
  /**
   * Queue shards: the queue is split into this many BullMQ queues, each under its own hash tag
   * (`shardPrefix`), so on Redis Cluster the work spreads over several masters. Every producer,
   * worker and CLI of a deployment must agree on it; 1 keeps today's single queue.
   */
  AGENTRY_SHARDS: envVar(z.coerce.number().int().min(1).max(MAX_SHARDS).default(1)),
  /**
   * Audit lanes: each audit chain (every shard's, and the global one) is written as this many
   * chains, and each worker process leases a lane of its own, so processes do not race each other
   * for one chain head. Set it to at least the number of worker processes; every process and CLI
   * of a deployment must agree on it (the CLI verifies and anchors every lane). 1 keeps one chain.
   */
  AGENTRY_AUDIT_LANES: envVar(z.coerce.number().int().min(1).max(MAX_AUDIT_LANES).default(1)),
  /**
   * Replicas that must acknowledge a write (Redis `WAIT`) before it counts as done, so a failover
   * to a replica cannot lose it: a worker runs a tool only once they hold its claim, a submit or a
   * cancel returns only once they hold it, and the CLI's approve or reject only once they hold the
   * decision. 0: off. Fewer within AGENTRY_REDIS_WAIT_TIMEOUT_MS: the tool does not run and its
   * attempt is retried; the submit fails, retryable (submit again with the same idempotency key:
   * it is one task); the cancel or decision fails, retryable, and stands on the master.
   */
  AGENTRY_REDIS_WAIT_REPLICAS: envVar(z.coerce.number().int().min(0).default(0)),
  AGENTRY_REDIS_WAIT_TIMEOUT_MS: envVar(z.coerce.number().int().min(1).default(1_000)),
});

/** Parsed environment. `AGENTRY_LLM` is resolved: `anthropic` when a key is set, else `scripted`. */
export type AgentryEnv = Omit<z.infer<typeof agentryEnvSchema>, "AGENTRY_LLM"> & {
  AGENTRY_LLM: "anthropic" | "scripted";
};

/**
 * Parses the environment once, at an app's edge. Throws `INVALID_CONFIG` naming every bad variable.
 */
export function parseEnv(env: NodeJS.ProcessEnv = process.env): AgentryEnv {
  const data = parseEnvWith(agentryEnvSchema, env);
  if (parseRedisTarget(data.REDIS_URL).kind === "cluster") checkClusterPrefix(data.AGENTRY_PREFIX);
  const llm = data.AGENTRY_LLM ?? (data.ANTHROPIC_API_KEY ? "anthropic" : "scripted");
  if (llm === "anthropic" && !data.ANTHROPIC_API_KEY && !data.ANTHROPIC_BASE_URL) {
    throw new AgentryError("INVALID_CONFIG", "AGENTRY_LLM=anthropic needs ANTHROPIC_API_KEY");
  }
  return { ...data, AGENTRY_LLM: llm };
}

/**
 * The replicas writes wait for, as the client, approval store and tool journal take them:
 * undefined when AGENTRY_REDIS_WAIT_REPLICAS is 0 (off).
 */
export function waitReplicasOf(
  env: Pick<AgentryEnv, "AGENTRY_REDIS_WAIT_REPLICAS" | "AGENTRY_REDIS_WAIT_TIMEOUT_MS">,
): { replicas: number; timeoutMs: number } | undefined {
  return env.AGENTRY_REDIS_WAIT_REPLICAS > 0
    ? { replicas: env.AGENTRY_REDIS_WAIT_REPLICAS, timeoutMs: env.AGENTRY_REDIS_WAIT_TIMEOUT_MS }
    : undefined;
}

/**
 * Parses the environment with an app's own schema (on top of {@link parseEnv}). Throws
 * `INVALID_CONFIG` naming every bad variable.
 */
export function parseEnvWith<S extends z.ZodType>(
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
): z.output<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new AgentryError("INVALID_CONFIG", `Invalid environment: ${problems}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })) },
    });
  }
  return parsed.data;
}
