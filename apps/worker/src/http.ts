import { createServer, type Server } from "node:http";
import type { AgentryMetrics, AgentWorker } from "@agentry/runtime";

/**
 * The worker's operations endpoint: `GET /healthz` (200 when Redis answers, the worker runs and
 * running tasks make progress; 503 with the reasons otherwise) and `GET /metrics` (Prometheus).
 */
export function startOpsServer(options: { port: number; host?: string; worker: AgentWorker; metrics: AgentryMetrics }): Promise<Server> {
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
        res.end(JSON.stringify({ error: { code: "INTERNAL", message: err instanceof Error ? err.message : String(err) } }));
      }
    })();
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "0.0.0.0", () => resolve(server));
  });
}
