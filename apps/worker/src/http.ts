import { createServer, type Server } from "node:http";
import { AgentryError } from "@agentry/core";
import type { AgentryMetrics, WorkerHealth } from "@agentry/runtime";

/**
 * The worker's operations endpoint: `GET /healthz` (200 when Redis answers, the worker runs and
 * running tasks make progress; 503 with the reasons otherwise) and `GET /metrics` (Prometheus).
 *
 * A port that cannot be had (taken by another process, such as a second worker on the host;
 * privileged; out of range) rejects with `INVALID_CONFIG` naming `AGENTRY_WORKER_PORT` and the
 * port. It never moves to a free port: Prometheus scrapes the configured one, and a worker on
 * another port would run unmonitored.
 */
export function startOpsServer(options: {
  port: number;
  host?: string;
  /** What `/healthz` reports: an `AgentWorker`, or a built worker process (every shard's). */
  worker: { health(): Promise<WorkerHealth> };
  metrics: AgentryMetrics;
}): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.method === "GET" && req.url === "/healthz") {
          const health = await options.worker.health();
          res.writeHead(health.ok ? 200 : 503, { "content-type": "application/json" });
          res.end(JSON.stringify(health));
        } else if (req.method === "GET" && req.url === "/metrics") {
          const text = await options.metrics.metricsText();
          res.writeHead(200, { "content-type": options.metrics.contentType });
          res.end(text);
        } else {
          res.writeHead(404, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { code: "NOT_FOUND", message: "GET /healthz or /metrics" } }));
        }
      } catch (err) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            error: { code: "INTERNAL", message: err instanceof Error ? err.message : String(err) },
          }),
        );
      }
    })();
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(portError(options.port, err)));
    try {
      server.listen(options.port, options.host ?? "0.0.0.0", () => resolve(server));
    } catch (err) {
      // An out-of-range port throws synchronously rather than emitting "error".
      reject(portError(options.port, err));
    }
  });
}

/** The one-line reason a port could not be listened on, naming the variable that sets it. */
function portError(port: number, err: unknown): AgentryError {
  const code = (err as { code?: unknown } | null)?.code;
  const why =
    code === "EADDRINUSE"
      ? `port ${port} is already in use (another worker on this host?)`
      : code === "EACCES"
        ? `port ${port} needs privileges this process does not have`
        : code === "ERR_SOCKET_BAD_PORT"
          ? `port ${port} is not a valid port (1-65535)`
          : `cannot listen on port ${port} (${typeof code === "string" ? code : err instanceof Error ? err.message : String(err)})`;
  const fix =
    code === "EADDRINUSE"
      ? "give each worker on a host its own AGENTRY_WORKER_PORT"
      : "set AGENTRY_WORKER_PORT to a port this process may use";
  return new AgentryError(
    "INVALID_CONFIG",
    `AGENTRY_WORKER_PORT: ${why}; ${fix}, or 0 to serve no /healthz and /metrics`,
    { cause: err },
  );
}
