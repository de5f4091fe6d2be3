import type { FastifyInstance } from "fastify";
import { AgentryError } from "@agentry/core";
import type { AgentryClient, TaskStatus } from "@agentry/runtime";
import { principalOf } from "../auth/authenticate.js";
import type { EventsTokens } from "../auth/events-token.js";
import {
  QueueEventLog,
  compareStreamIds,
  fallbackFinalId,
  formatStreamId,
  isFallbackFinalId,
  parseStreamId,
  type StreamId,
  type TaskStreamEntry,
} from "../events/queue-event-log.js";
import { taskIdParam } from "../http/id-params.js";
import { taskUrls } from "./tasks.js";

/** The reconnect delay sent to clients as the `retry:` field. @defaultValue 3 s */
export const DEFAULT_EVENTS_RETRY_MS = 3_000;

// Re-read the stream and the task this often even without a wake-up: QueueEvents may start
// reading after an entry, or the stream may be trimmed past a task's end before it is read.
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

function finalData(status: TaskStatus): { event: "completed" | "failed"; data: unknown } {
  if (status.state === "completed") return { event: "completed", data: { type: "completed", taskId: status.taskId, result: status.result } };
  return { event: "failed", data: { type: "failed", taskId: status.taskId, error: status.error } };
}

/**
 * `POST /v1/tasks/:id/events-token`: a short-lived token that lets a browser's EventSource read
 * this task's events (`GET eventsUrl`, which carries it as `?token=`). Needs the API auth hook.
 * Another tenant's or an unknown task → 404, so a token is only ever minted for the caller's task.
 */
export function registerEventsTokenRoute(app: FastifyInstance, client: AgentryClient, tokens: EventsTokens): void {
  app.post<{ Params: { id: string } }>("/v1/tasks/:id/events-token", async (request) => {
    const { tenant } = principalOf(request);
    const taskId = taskIdParam(request.params.id);
    await client.status(taskId, { tenant });
    const { token, expiresAt } = tokens.mint(tenant, taskId);
    request.log.info({ taskId, expiresAt }, "events token minted");
    return { token, expiresAt: new Date(expiresAt).toISOString(), eventsUrl: `${taskUrls(taskId).eventsUrl}?token=${encodeURIComponent(token)}` };
  });
}

/**
 * `GET /v1/tasks/:id/events`: server-sent events, as a standard EventSource expects them.
 *
 * - Every event's `id:` is the Redis stream entry id (`<ms>-<seq>`) of what it reports in the
 *   queue's event stream: the same on every replica and every reconnect, increasing within a task.
 * - `Last-Event-ID` resumes after that event: the task's later entries are replayed from the
 *   stream, with no gap and no repeat. Without it (or when the stream was trimmed past it, or it
 *   is not an id this stream issued) the stream starts with a `status` event (the task now).
 * - Then `progress` events, then one `completed` or `failed` event, and the server closes. A
 *   finished task's stream is its final event alone. A reconnect with a `Last-Event-ID` at or
 *   after the final event answers 204, which tells EventSource to stop.
 * - `retry:` is sent first; `: heartbeat` comments every `heartbeatMs`. No event is named `error`
 *   (EventSource's own): if the stream itself fails, the server closes it and the client's
 *   reconnect resumes from its last id.
 *
 * Unknown or another tenant's task → 404 before the stream starts; an events token for another
 * task → 404 too. When the client disconnects the reading stops.
 */
export function registerTaskEventRoutes(app: FastifyInstance, options: TaskEventRoutesOptions): void {
  const { client, heartbeatMs, retryMs, streams } = options;
  const log = new QueueEventLog(client);

  app.get<{ Params: { id: string } }>("/v1/tasks/:id/events", async (request, reply) => {
    const principal = principalOf(request);
    const { tenant } = principal;
    const taskId = taskIdParam(request.params.id);
    if (principal.taskId !== undefined && principal.taskId !== taskId) throw new AgentryError("NOT_FOUND", `No task ${taskId}`);

    // Wake-ups only: what is sent is always read from the stream in id order, so an event
    // QueueEvents delivered early or never cannot reorder or skip anything.
    let wake: (() => void) | undefined;
    let pending: boolean | undefined;
    const onEvent = ({ jobId }: { jobId: string }) => {
      if (jobId !== taskId) return;
      pending = true;
      wake?.();
    };
    const queueEvents = await client.queueEvents();
    queueEvents.on("progress", onEvent);
    queueEvents.on("completed", onEvent);
    queueEvents.on("failed", onEvent);
    const detach = () => {
      queueEvents.off("progress", onEvent);
      queueEvents.off("completed", onEvent);
      queueEvents.off("failed", onEvent);
    };

    let position;
    let status: TaskStatus;
    try {
      position = await log.position();
      status = await client.status(taskId, { tenant });
    } catch (err) {
      detach();
      throw err;
    }
    let after = parseStreamId(request.headers["last-event-id"] as string | undefined);
    // An id past the stream's end was never issued here, unless it is a final event's fallback id.
    if (after && compareStreamIds(after, position.top) > 0 && !(isFinished(status) && isFallbackFinalId(after))) after = undefined;

    // A finished task: replay what the client missed, then its final event; or 204 if it has it.
    let finishedPlan: { replay: TaskStreamEntry[]; finalId: StreamId } | undefined;
    if (isFinished(status)) {
      try {
        const end = await log.endOf(taskId, status.finishedAt);
        if (after && (end ? compareStreamIds(after, end) >= 0 : isFallbackFinalId(after))) {
          detach();
          request.log.info({ taskId }, "task event stream: final event already delivered (204)");
          return reply.code(204).send();
        }
        const replay = after && end ? (await log.after(taskId, after)).entries.filter((e) => e.event === "progress" && compareStreamIds(e.id, end) < 0) : [];
        finishedPlan = { replay, finalId: end ?? fallbackFinalId(status.finishedAt ?? Date.now(), after) };
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
        for (const e of finishedPlan.replay) send(e.id, "progress", { type: "progress", taskId, progress: e.progress });
        const final = finalData(status);
        send(finishedPlan.finalId, final.event, final.data);
        outcome = final.event;
        return;
      }
      let cursor: StreamId;
      if (after && !(position.maxDeleted && compareStreamIds(position.maxDeleted, after) > 0)) {
        cursor = after;
      } else {
        cursor = position.top;
        send(cursor, "status", { type: "status", taskId, status });
      }
      let scanned = cursor;
      let checkStatus = false;
      while (!signal.aborted) {
        pending = false;
        // The task's state first, then the stream: an end recorded in the state is then in what is read.
        const now = checkStatus ? await client.status(taskId, { tenant }) : undefined;
        checkStatus = false;
        const read = await log.after(taskId, scanned);
        scanned = read.scanned;
        let ended = false;
        for (const e of read.entries) {
          if (compareStreamIds(e.id, cursor) <= 0) continue;
          if (e.event === "progress") {
            send(e.id, "progress", { type: "progress", taskId, progress: e.progress });
            cursor = e.id;
            continue;
          }
          // An end entry counts once the task's state agrees (a job id reused after removal must not end this stream).
          const finalStatus = await client.status(taskId, { tenant });
          if (!isFinished(finalStatus)) continue;
          const final = finalData(finalStatus);
          send(e.id, final.event, final.data);
          outcome = final.event;
          ended = true;
          break;
        }
        if (ended) break;
        if (now && isFinished(now)) {
          // Finished, yet its end was not in the stream: trimmed before it was read.
          const final = finalData(now);
          send(fallbackFinalId(now.finishedAt ?? Date.now(), cursor), final.event, final.data);
          outcome = final.event;
          break;
        }
        if (pending || signal.aborted) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            checkStatus = true;
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
        request.log.warn({ err: error, taskId }, "task event stream failed; the client's reconnect resumes it");
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
