import type { FastifyInstance } from "fastify";
import { AgentryError } from "@agentry/core";
import type { AgentryClient, TaskStatus, TaskStreamNotice } from "@agentry/runtime";
import { principalOf } from "../auth/authenticate.js";
import type { EventsTokens } from "../auth/events-token.js";
import {
  STREAM_START,
  TaskEventLog,
  compareStreamIds,
  finalEventId,
  formatStreamId,
  isFinalEventId,
  parseStreamId,
  type StreamId,
  type TaskStreamItem,
} from "../events/task-event-log.js";
import { taskIdParam } from "../http/id-params.js";
import { taskUrls } from "./tasks.js";

/** The reconnect delay sent to clients as the `retry:` field. @defaultValue 3 s */
export const DEFAULT_EVENTS_RETRY_MS = 3_000;

// Re-read the stream and the task this often even without a wake-up: a wake-up (pub/sub for the
// task's stream, QueueEvents for its end) can be missed, never what the stream holds.
const SWEEP_MS = 1_000;

/** Options for {@link registerTaskEventRoutes}. */
export interface TaskEventRoutesOptions {
  client: AgentryClient;
  /** Interval of `: heartbeat` comments that keep proxies from closing an idle stream. */
  heartbeatMs: number;
  /** The `retry:` field: how long an EventSource waits before reconnecting. */
  retryMs: number;
  /** Open streams; the app aborts them all when it closes. */
  streams: Set<AbortController>;
}

const isFinished = (status: TaskStatus) => status.state === "completed" || status.state === "failed";

/** The SSE event of one stream entry: `progress`, or `delta` for a piece of the model's text. */
function entryEvent(taskId: string, item: TaskStreamItem): { event: "progress" | "delta"; data: unknown } {
  const { entry } = item;
  if (entry.type === "progress")
    return { event: "progress", data: { type: "progress", taskId, progress: entry.progress } };
  return {
    event: "delta",
    data: { type: "delta", taskId, step: entry.step, offset: entry.offset, text: entry.text },
  };
}

function finalData(status: TaskStatus): { event: "completed" | "failed"; data: unknown } {
  if (status.state === "completed")
    return { event: "completed", data: { type: "completed", taskId: status.taskId, result: status.result } };
  return { event: "failed", data: { type: "failed", taskId: status.taskId, error: status.error } };
}

/**
 * `POST /v1/tasks/:id/events-token`: a short-lived token that lets a browser's EventSource read
 * this task's events (`GET eventsUrl`, which carries it as `?token=`). Needs the API auth hook.
 * Another tenant's or an unknown task → 404, so a token is only ever minted for the caller's task.
 */
export function registerEventsTokenRoute(
  app: FastifyInstance,
  client: AgentryClient,
  tokens: EventsTokens,
): void {
  app.post<{ Params: { id: string } }>("/v1/tasks/:id/events-token", async (request) => {
    const { tenant } = principalOf(request);
    const taskId = taskIdParam(request.params.id);
    await client.status(taskId, { tenant });
    const { token, expiresAt } = tokens.mint(tenant, taskId);
    request.log.info({ taskId, expiresAt }, "events token minted");
    return {
      token,
      expiresAt: new Date(expiresAt).toISOString(),
      eventsUrl: `${taskUrls(taskId).eventsUrl}?token=${encodeURIComponent(token)}`,
    };
  });
}

/**
 * `GET /v1/tasks/:id/events`: server-sent events, as a standard EventSource expects them.
 *
 * - What is sent comes from the task's stream (`<prefix>:<queue>:<taskId>:stream`), written by
 *   its workers: `progress` events, and `delta` events carrying the model's text as it is
 *   generated, `{step, offset, text}` (place each piece at its offset in its step's text; a step
 *   generated again by a retried attempt starts over at offset 0 and replaces the earlier text:
 *   `StreamedText` in `@agentry/runtime` does this).
 * - Every event's `id:` is its entry id in that stream (`<ms>-<seq>`): the same on every replica
 *   and every reconnect, increasing within a task. The final event's id is the task's finish
 *   time (or the last id sent, if later) with the largest sequence number.
 * - `Last-Event-ID` resumes after that event: the later entries are replayed from the stream,
 *   with no gap and no repeat. Without it (or when the stream was trimmed past it, or it is not an
 *   id this stream issued) the stream starts with a `status` event (the task now, id `0-0`),
 *   then replays the task's stream from its start (the text so far), then follows it live.
 * - Then one `completed` or `failed` event, and the server closes. A finished task's stream is
 *   its final event alone. A reconnect with a `Last-Event-ID` of the final event answers 204,
 *   which tells EventSource to stop.
 * - `retry:` is sent first; `: heartbeat` comments every `heartbeatMs`. No event is named `error`
 *   (EventSource's own): if the stream itself fails, the server closes it and the client's
 *   reconnect resumes from its last id.
 *
 * Unknown or another tenant's task → 404 before the stream starts; an events token for another
 * task → 404 too. When the client disconnects the reading stops.
 */
export function registerTaskEventRoutes(app: FastifyInstance, options: TaskEventRoutesOptions): void {
  const { client, heartbeatMs, retryMs, streams } = options;
  const log = new TaskEventLog(client);

  app.get<{ Params: { id: string } }>("/v1/tasks/:id/events", async (request, reply) => {
    const principal = principalOf(request);
    const { tenant } = principal;
    const taskId = taskIdParam(request.params.id);
    if (principal.taskId !== undefined && principal.taskId !== taskId)
      throw new AgentryError("NOT_FOUND", `No task ${taskId}`);

    // Wake-ups only: what is sent is always read from the stream in id order, so a wake-up that
    // comes early, late or never cannot reorder or skip anything.
    let wake: (() => void) | undefined;
    let pending: boolean | undefined;
    let checkStatus = false;
    /** Writes announced since the loop last looked, in order (undefined: unreadable, read the stream). */
    const notices: (TaskStreamNotice | undefined)[] = [];
    const onWrite = (notice: TaskStreamNotice | undefined) => {
      notices.push(notice);
      pending = true;
      wake?.();
    };
    const onEnd = ({ jobId }: { jobId: string }) => {
      if (jobId !== taskId) return;
      checkStatus = true;
      pending = true;
      wake?.();
    };
    const queueEvents = await client.queueEvents(taskId);
    queueEvents.on("completed", onEnd);
    queueEvents.on("failed", onEnd);
    let stopWakeups: (() => Promise<void>) | undefined;
    const detach = () => {
      queueEvents.off("completed", onEnd);
      queueEvents.off("failed", onEnd);
      void stopWakeups?.();
    };

    let position;
    let status: TaskStatus;
    try {
      // Listening before reading: a write after the read wakes the loop.
      stopWakeups = await client.onTaskStream(taskId, onWrite);
      position = await log.position(taskId);
      status = await client.status(taskId, { tenant });
    } catch (err) {
      detach();
      throw err;
    }
    let after = parseStreamId(request.headers["last-event-id"] as string | undefined);
    // An id past the stream's end was never issued here, unless it is a finished task's final event id.
    if (after && compareStreamIds(after, position.top) > 0 && !(isFinished(status) && isFinalEventId(after)))
      after = undefined;

    // A finished task: replay what the client missed, then its final event; or 204 if it has it.
    let finishedPlan: { replay: TaskStreamItem[]; finalId: StreamId } | undefined;
    if (isFinished(status)) {
      if (after && isFinalEventId(after)) {
        detach();
        request.log.info({ taskId }, "task event stream: final event already delivered (204)");
        return reply.code(204).send();
      }
      try {
        const replay = after ? await log.after(taskId, after) : [];
        finishedPlan = {
          replay,
          finalId: finalEventId(status.finishedAt ?? Date.now(), replay.at(-1)?.id ?? after ?? position.top),
        };
      } catch (err) {
        detach();
        throw err;
      }
    }

    const controller = new AbortController();
    const { signal } = controller;
    streams.add(controller);
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    raw.on("close", () => controller.abort());
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    let sent = 0;
    const send = (id: StreamId, event: string, data: unknown) => {
      sent++;
      raw.write(`id: ${formatStreamId(id)}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    raw.write(`retry: ${retryMs}\n\n`);
    const heartbeat = setInterval(() => raw.write(": heartbeat\n\n"), heartbeatMs);
    let outcome = "aborted";
    try {
      if (finishedPlan) {
        for (const item of finishedPlan.replay) {
          const e = entryEvent(taskId, item);
          send(item.id, e.event, e.data);
        }
        const final = finalData(status);
        send(finishedPlan.finalId, final.event, final.data);
        outcome = final.event;
        return;
      }
      let cursor: StreamId;
      if (after && !(position.maxDeleted && compareStreamIds(position.maxDeleted, after) > 0)) {
        cursor = after;
      } else {
        cursor = STREAM_START;
        send(cursor, "status", { type: "status", taskId, status });
      }
      const deliver = (item: TaskStreamItem) => {
        const e = entryEvent(taskId, item);
        send(item.id, e.event, e.data);
        cursor = item.id;
        // The last progress of a task that completes: look for its end right away.
        if (item.entry.type === "progress" && item.entry.progress.phase === "done") checkStatus = true;
      };
      let mustRead = true;
      while (!signal.aborted) {
        pending = false;
        // The task's state first, then the stream: a task found finished has written all its entries.
        const now = checkStatus ? await client.status(taskId, { tenant }) : undefined;
        checkStatus = false;
        // A write that follows what was sent comes with its entries: send them without a read.
        // Anything else (a gap, an unreadable notice, a sweep, the end) reads the stream.
        mustRead ||= now !== undefined;
        for (const notice of notices.splice(0)) {
          if (mustRead) break;
          const records = notice?.records.map((r) => ({ id: parseStreamId(r.id), entry: r.entry }));
          const lastId = records?.at(-1)?.id;
          if (!notice || !records || records.some((r) => r.id === undefined) || !lastId) mustRead = true;
          else if (compareStreamIds(lastId, cursor) <= 0) continue;
          else if (notice.prev !== formatStreamId(cursor)) mustRead = true;
          else for (const r of records) deliver(r as TaskStreamItem);
        }
        if (mustRead) {
          mustRead = false;
          notices.length = 0;
          for (const item of await log.after(taskId, cursor)) deliver(item);
        }
        if (now && isFinished(now)) {
          const final = finalData(now);
          send(finalEventId(now.finishedAt ?? Date.now(), cursor), final.event, final.data);
          outcome = final.event;
          break;
        }
        if (pending || checkStatus || signal.aborted) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            checkStatus = true;
            mustRead = true;
            resolve();
          }, SWEEP_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } catch (err) {
      if (!signal.aborted) {
        const error = AgentryError.from(err);
        outcome = "interrupted";
        request.log.warn(
          { err: error, taskId },
          "task event stream failed; the client's reconnect resumes it",
        );
        raw.write(`: interrupted (${error.code})\n\n`);
      }
    } finally {
      detach();
      clearInterval(heartbeat);
      signal.removeEventListener("abort", onAbort);
      streams.delete(controller);
      controller.abort();
      raw.end();
      request.log.info({ taskId, events: sent, outcome }, "task event stream closed");
    }
  });
}
