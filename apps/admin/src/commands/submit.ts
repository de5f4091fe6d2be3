import { AgentryError, type AgentryErrorData } from "@agentry/core/base";
import type { TaskProgress } from "@agentry/runtime";
import { onePositional, parseCommand } from "../args.js";
import { parseSeconds } from "../format.js";
import { CliError, EXIT, readAll, writeJson } from "../io.js";
import type { Command } from "./command.js";
import { followTask } from "./watch.js";

const USAGE =
  'agentry submit "<prompt>" [--session S] [--user U] [--tenant T] [--idempotency-key K] [--wait | --follow] [--timeout SEC] [--json]';

/** How long `--wait` waits when `--timeout` is not given. */
const DEFAULT_WAIT_MS = 300_000;

/** `agentry submit`: enqueue a task; with `--wait`, follow it and print the answer. */
export const submitCommand: Command = {
  path: ["submit"],
  usage: USAGE,
  summary:
    "Submit an agent task (prints its id; with --wait, its answer; with --follow, the answer as it is generated).",
  traced: true,
  details: [
    'The prompt "-" reads it from stdin. --tenant defaults to "default", --user to "anonymous",',
    "--session to a new session. --wait shows progress on stderr and prints the answer on stdout",
    `(JSON: the result with taskId and sessionId); --timeout defaults to ${DEFAULT_WAIT_MS / 1000} s.`,
    "--follow waits too, and prints the model's text on stdout as it is generated (as `agentry watch`",
    "does; with --json one JSON object per event).",
    `Exit ${EXIT.FAILURE} when the task fails; exit ${EXIT.WAIT_TIMEOUT} when the wait times out (the task itself keeps`,
    "running: wait again with `agentry submit` and the same --idempotency-key, or follow `agentry status`).",
    'With --json, "outcome" is "completed", "failed" or "timed_out".',
    "With OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, the submit is traced:",
    "its span starts the task's trace, which the worker's spans continue.",
  ].join("\n"),
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      session: { type: "string" },
      user: { type: "string" },
      tenant: { type: "string" },
      "idempotency-key": { type: "string" },
      wait: { type: "boolean" },
      follow: { type: "boolean" },
      timeout: { type: "string" },
    });
    let prompt = onePositional(positionals, "prompt", USAGE);
    if (prompt === "-") prompt = await readAll(ctx.io.stdin, "submit");
    const timeoutMs =
      values.timeout === undefined ? DEFAULT_WAIT_MS : parseSeconds(values.timeout, "--timeout");
    const tenant = values.tenant ?? "default";
    const { stdout, stderr } = ctx.io;

    const client = await ctx.client();
    const submitted = await client.submit(
      {
        prompt,
        ...(values.session ? { sessionId: values.session } : {}),
        ...(values.user ? { userId: values.user } : {}),
        ...(values["idempotency-key"] ? { idempotencyKey: values["idempotency-key"] } : {}),
      },
      { tenant },
    );
    const { taskId, sessionId, deduplicated } = submitted;
    ctx.recordSubmitted({ taskId, sessionId, tenant });

    if (values.follow) {
      stderr.write(
        `${deduplicated ? "following existing" : "submitted"} task ${taskId} (session ${sessionId})\n`,
      );
      return followTask(ctx, client, taskId, { json: values.json === true, timeoutMs, sessionId });
    }

    if (!values.wait) {
      if (values.json) writeJson(stdout, submitted);
      else {
        stdout.write(`${taskId}\n`);
        if (deduplicated)
          stderr.write(`idempotency key matched an existing task: nothing new was enqueued\n`);
      }
      return EXIT.OK;
    }

    stderr.write(
      `${deduplicated ? "following existing" : "submitted"} task ${taskId} (session ${sessionId})\n`,
    );
    for await (const event of client.watch(taskId, { timeoutMs })) {
      switch (event.type) {
        case "progress": {
          const line = describeProgress(event.progress);
          if (line) stderr.write(`${line}\n`);
          break;
        }
        case "completed":
          stderr.write(`completed in ${event.result.steps} step${event.result.steps === 1 ? "" : "s"}\n`);
          if (values.json) writeJson(stdout, { taskId, sessionId, outcome: "completed", ...event.result });
          else stdout.write(event.result.text.endsWith("\n") ? event.result.text : `${event.result.text}\n`);
          return EXIT.OK;
        case "failed":
          throw new CliError(`task failed: ${errorText(event.error)}`, {
            result: { taskId, sessionId, outcome: "failed", state: "failed", error: event.error },
          });
      }
    }
    const state = await client
      .status(taskId)
      .then((s) => s.state)
      .catch(() => "unknown");
    const timeout = new AgentryError(
      "TIMEOUT",
      `task ${taskId} did not finish within ${timeoutMs / 1000} s (it is ${state})`,
    );
    throw new CliError(`task timed out: ${errorText(timeout.toData())}`, {
      exitCode: EXIT.WAIT_TIMEOUT,
      result: { taskId, sessionId, outcome: "timed_out", state, error: timeout.toData() },
    });
  },
};

/** `[CODE] message`, as task failures are shown everywhere. */
export function errorText(error: Pick<AgentryErrorData, "code" | "message">): string {
  return `[${error.code}] ${error.message}`;
}

/** What a parked task waits for, in words. */
const PARKED_REASONS: Record<string, string> = {
  session_busy: "another task of this session is running",
  budget_contended: "other model calls hold the budget's remainder",
  tenant_capped: "its tenant runs as many tasks as it may",
  redis_unavailable: "Redis is unavailable; it tries again",
};

/** One progress line for humans, or undefined for phases not worth a line. */
export function describeProgress(p: TaskProgress): string | undefined {
  switch (p.phase) {
    case "model":
      return `step ${p.step}: calling model`;
    case "tool":
      return `step ${p.step}: running tool ${p.tool ?? "?"}`;
    case "awaiting_approval": {
      const ids = p.approvalIds ?? [];
      if (ids.length === 0) return `step ${p.step}: awaiting approval`;
      return ids
        .map(
          (id) =>
            `step ${p.step}: awaiting approval ${id} — run \`agentry approvals approve ${id} --as <approver>\``,
        )
        .join("\n");
    }
    case "parked":
      return `step ${p.step}: waiting (${PARKED_REASONS[p.reason ?? ""] ?? p.reason ?? "parked"})`;
    case "done":
      return undefined;
  }
}
