import { z } from "zod";
import { ERROR_CODES, type AgentryErrorData } from "./agentry-error.js";

/**
 * The schema of {@link AgentryErrorData}, for errors read back from a job or an HTTP body. Apart
 * from the error class so that code that only throws and checks errors (the CLI's start-up, through
 * `@agentry/core/base`) does not load zod.
 */
export const agentryErrorDataSchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string(),
  category: z.enum(["user", "system", "provider"]),
  retryable: z.boolean(),
  retryAfterMs: z.number().int().nonnegative().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
}) satisfies z.ZodType<AgentryErrorData>;
