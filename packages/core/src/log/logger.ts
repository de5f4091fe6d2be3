import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger } from "pino";

/** Paths redacted from every log line: credentials must never reach a log. */
export const DEFAULT_REDACT_PATHS = [
  "apiKey",
  "*.apiKey",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "headers['x-api-key']",
  "*.headers['x-api-key']",
  "privateKey",
  "*.privateKey",
  "password",
  "*.password",
  "token",
  "*.token",
  "ANTHROPIC_API_KEY",
  "*.ANTHROPIC_API_KEY",
];

/** Options for {@link createLogger}. */
export interface CreateLoggerOptions {
  /** Service name (`service` field). */
  name: string;
  /** @defaultValue `info` */
  level?: string;
  /** Extra redaction paths (pino path syntax), added to {@link DEFAULT_REDACT_PATHS}. */
  redact?: string[];
  /** Fields added to every line. */
  base?: Record<string, unknown>;
  /** Extra pino options, e.g. a `mixin` that adds `trace_id`/`span_id`. */
  pinoOptions?: Omit<LoggerOptions, "name" | "level" | "redact" | "base">;
  /** Where to write. @defaultValue stdout */
  destination?: pino.DestinationStream;
}

/** A pino JSON logger with Agentry's redaction rules. */
export function createLogger(options: CreateLoggerOptions): Logger {
  const opts: LoggerOptions = {
    ...options.pinoOptions,
    level: options.level ?? "info",
    base: { service: options.name, pid: process.pid, ...options.base },
    redact: { paths: [...DEFAULT_REDACT_PATHS, ...(options.redact ?? [])], censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}
