import type { FastifyInstance } from "fastify";
import { AgentryError } from "@agentry/core";
import type { AgentryClient, TaskEvent } from "@agentry/runtime";
import { principalOf } from "../auth/authenticate.js";
import { taskIdParam } from "../http/id-params.js";

/** Options for {@link registerTaskEventRoutes}. */
export interface TaskEventRoutesOptions {
  client: AgentryClient;
  /** Interval of `: heartbeat` comments that keep proxies from closing an idle stream. */
  heartbeatMs: number;
  /** Open streams; the app aborts them all when it closes. */
  streams: Set<AbortController>;
}

/**
 * `GET /v1/tasks/:id/events`: server-sent events. First a `status` event (the task as it is now),
 * then `progress` events, then one `completed` or `failed` event, and the stream ends. A
 * `: heartbeat` comment is sent every `heartbeatMs`. Unknown or another tenant's task → 404 before
 * the stream starts; a failure while streaming → an `error` event, then the end. When the client
 * disconnects the watch stops.
 */
export function registerTaskEventRoutes(app: FastifyInstance, options: TaskEventRoutesOptions): void {
  const { client, heartbeatMs, streams } = options;

  app.get<{ Params: { id: string } }>("/v1/tasks/:id/events", async (request, reply) => {
    const { tenant } = principalOf(request);
    const taskId = taskIdParam(request.params.id);
    const status = await client.status(taskId, { tenant });

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
    let sent = 0;
    const send = (event: string, data: unknown) => {
      sent++;
      raw.write(`id: ${sent}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const heartbeat = setInterval(() => raw.write(": heartbeat\n\n"), heartbeatMs);
    const aborted = new Promise<"aborted">((resolve) => signal.addEventListener("abort", () => resolve("aborted"), { once: true }));
    const events = client.watch(taskId, { signal, caller: { tenant } });
    let outcome = "aborted";
    try {
      send("status", { type: "status", taskId, status });
      while (!signal.aborted) {
        const next = events.next();
        next.catch(() => undefined);
        const step = await Promise.race([next, aborted]);
        if (step === "aborted" || step.done) break;
        const event: TaskEvent = step.value;
        send(event.type, event);
        if (event.type === "completed" || event.type === "failed") {
          outcome = event.type;
          break;
        }
      }
    } catch (err) {
      if (!signal.aborted) {
        const error = AgentryError.from(err);
        outcome = "error";
        request.log.warn({ err: error, taskId }, "task event stream failed");
        send("error", { type: "error", taskId, error: { code: error.code, message: error.code === "INTERNAL" ? "Internal error" : error.message } });
      }
    } finally {
      clearInterval(heartbeat);
      streams.delete(controller);
      controller.abort();
      void events.return(undefined).catch(() => undefined);
      raw.end();
      request.log.info({ taskId, events: sent, outcome }, "task event stream closed");
    }
  });
}
