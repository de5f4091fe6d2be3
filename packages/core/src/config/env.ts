import { z } from "zod";
import { AgentryError } from "../errors/agentry-error.js";
import { DEFAULT_REDIS_URL } from "../redis/connection.js";

const emptyToUndefined = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);
const optionalString = z.preprocess(emptyToUndefined, z.string().optional());

/** The environment contract of every Agentry app (README "Configuration", docs/architecture.md). */
export const agentryEnvSchema = z.object({
  REDIS_URL: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .regex(/^rediss?(\+cluster)?:\/\/\S+$/, "must be redis://, rediss:// or redis+cluster:// followed by host:port")
      .default(DEFAULT_REDIS_URL),
  ),
  AGENTRY_PREFIX: z.preprocess(emptyToUndefined, z.string().min(1).default("agentry")),
  AGENTRY_LLM: z.preprocess(emptyToUndefined, z.enum(["anthropic", "scripted"]).optional()),
  AGENTRY_MODEL: optionalString,
  ANTHROPIC_API_KEY: optionalString,
  ANTHROPIC_BASE_URL: optionalString,
  AGENTRY_CONCURRENCY: z.preprocess(emptyToUndefined, z.coerce.number().int().positive().default(4)),
  AGENTRY_POLICY_FILE: optionalString,
  AGENTRY_APPROVERS_FILE: optionalString,
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalString,
  /** Secret that authenticates audit entries (HMAC); every writer and verifier holds it, Redis does not. */
  AGENTRY_AUDIT_KEY: z.preprocess(emptyToUndefined, z.string().min(32, "must be at least 32 characters").optional()),
  /** Retired audit keys, comma separated: verifiers accept entries written under them after a rotation. */
  AGENTRY_AUDIT_PREVIOUS_KEYS: z.preprocess(
    (v) => (typeof v === "string" ? v.split(",").map((k) => k.trim()).filter((k) => k !== "") : v),
    z.array(z.string().min(32, "every key must be at least 32 characters")).default([]),
  ),
  LOG_LEVEL: z.preprocess(
    emptyToUndefined,
    z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  ),
});

/** Parsed environment. `AGENTRY_LLM` is resolved: `anthropic` when a key is set, else `scripted`. */
export type AgentryEnv = Omit<z.infer<typeof agentryEnvSchema>, "AGENTRY_LLM"> & {
  AGENTRY_LLM: "anthropic" | "scripted";
};

/**
 * Parses the environment once, at an app's edge. Throws `INVALID_CONFIG` naming every bad variable.
 */
export function parseEnv(env: NodeJS.ProcessEnv = process.env): AgentryEnv {
  const parsed = agentryEnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new AgentryError("INVALID_CONFIG", `Invalid environment: ${problems}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })) },
    });
  }
  const data = parsed.data;
  const llm = data.AGENTRY_LLM ?? (data.ANTHROPIC_API_KEY ? "anthropic" : "scripted");
  if (llm === "anthropic" && !data.ANTHROPIC_API_KEY && !data.ANTHROPIC_BASE_URL) {
    throw new AgentryError("INVALID_CONFIG", "AGENTRY_LLM=anthropic needs ANTHROPIC_API_KEY");
  }
  return { ...data, AGENTRY_LLM: llm };
}
