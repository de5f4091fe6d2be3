import type { CliContext } from "../context.js";

/** One `agentry` command. `run` returns the exit code; it throws `CliError` to fail with a reason. */
export interface Command {
  /** Words after `agentry`, e.g. `["approvals", "approve"]`. */
  path: string[];
  /** One line of syntax, shown in help and usage errors. */
  usage: string;
  /** One sentence for `agentry --help`. */
  summary: string;
  /** Extra help text for `agentry <command> --help`. */
  details?: string;
  /**
   * Runs inside an `agentry <command>` span exported over OTLP when an endpoint is set, so the
   * work it enqueues continues its trace. @defaultValue false
   */
  traced?: boolean;
  run(ctx: CliContext, argv: string[]): Promise<number>;
}
