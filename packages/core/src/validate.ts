import { AgentryError } from "./errors/agentry-error.js";

/**
 * Returns `value` when it is a positive safe integer; otherwise throws `code` (`INVALID_INPUT`
 * for arguments, `INVALID_CONFIG` for options fixed at construction) naming the field.
 */
export function positiveInt(
  value: number,
  name: string,
  code: "INVALID_INPUT" | "INVALID_CONFIG" = "INVALID_INPUT",
): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new AgentryError(code, `${name} must be a positive integer (got ${value})`, {
      details: { field: name },
    });
  }
  return value;
}
