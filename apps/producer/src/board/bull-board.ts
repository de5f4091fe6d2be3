import type { FastifyInstance } from "fastify";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import { isGroupId, isTaskId, type AgentryClient } from "@agentry/runtime";
import type { ApiKeyAuthenticator } from "../auth/api-keys.js";
import { boardAuth, principalOfHeaders } from "../auth/authenticate.js";

/** Where Bull Board is mounted. */
export const BOARD_PATH = "/admin/queues";

/** Options for {@link registerBullBoard}. */
export interface BullBoardOptions {
  /** Agentry's task queue, one per queue shard (`AgentryClient.shards[i].queue`), shard 0 first. */
  queues: readonly AgentryClient["queue"][];
  auth: ApiKeyAuthenticator;
  /** @defaultValue {@link BOARD_PATH} */
  basePath?: string;
}

/** The tenant a job belongs to: `payload.tenant` for agent tasks, `tenant` for fan-out groups. */
function tenantOfJobData(data: unknown): string | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const d = data as { tenant?: unknown; payload?: { tenant?: unknown } };
  const tenant = d.payload?.tenant ?? d.tenant;
  return typeof tenant === "string" ? tenant : undefined;
}

/**
 * The Bull Board API routes a non-admin key may read (as Bull Board names them). Everything else
 * is for admin keys only: Redis statistics (server version, memory, clients), the worker list
 * (client names and network addresses), job schedulers, metrics history, and any route a later
 * Bull Board version adds, so an upgrade cannot widen what a tenant sees.
 */
export const TENANT_BOARD_ROUTES: ReadonlySet<string> = new Set([
  "/api/queues",
  "/api/queues/:queueName/:jobId",
  "/api/queues/:queueName/:jobId/logs",
  "/api/queues/:queueName/:jobId/flow",
  "/api/queues/:queueName/metrics",
  "/api/metrics/latency",
]);

/**
 * Mounts Bull Board on Agentry's queue, behind the API's keys (see `boardAuth`). Admin keys get
 * the full board; any other key gets it read-only (every change answers 403), may read only the
 * routes of {@link TENANT_BOARD_ROUTES} (others answer 403), and sees only its own tenant's jobs
 * (other jobs are filtered from lists and answer 404; the per-state counts stay queue-wide, as
 * Bull Board computes them). A job id that is not shaped like a task or group id answers 404 for
 * every key, before Bull Board reads it: it could name one of BullMQ's own keys.
 */
export async function registerBullBoard(app: FastifyInstance, options: BullBoardOptions): Promise<void> {
  const basePath = options.basePath ?? BOARD_PATH;
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    // Every shard's queue is named `tasks`; with several, each board name carries its shard.
    queues: options.queues.map(
      (queue, i) =>
        new BullMQAdapter(queue, {
          ...(options.queues.length > 1 ? { prefix: `shard${i}-` } : {}),
          displayName: options.queues.length > 1 ? `Agentry tasks, shard ${i}` : "Agentry tasks",
          description: "agent.run and agent.fanout jobs",
        }),
    ),
    serverAdapter,
    options: {
      uiConfig: { boardTitle: "Agentry" },
      handlerHooks: {
        async before({ method, route, request }) {
          const principal = principalOfHeaders(request.headers as object);
          if (!principal) return { allow: false, status: 403 };
          const { queueName, jobId } = request.params as { queueName?: string; jobId?: string };
          if (jobId !== undefined && !isTaskId(jobId) && !isGroupId(jobId))
            return { allow: false, status: 404 };
          if (principal.admin) return undefined;
          if (method !== "get")
            return { allow: false, status: 403, message: "This API key is read-only in Bull Board" };
          if (!TENANT_BOARD_ROUTES.has(route))
            return { allow: false, status: 403, message: "Only admin keys may read this in Bull Board" };
          if (queueName && jobId) {
            const job = await request.queues.get(queueName)?.getJob(jobId);
            if (!job || tenantOfJobData(job.toJSON().data) !== principal.tenant)
              return { allow: false, status: 404 };
          }
          return undefined;
        },
        after({ request }, result) {
          const principal = principalOfHeaders(request.headers as object);
          if (!principal || principal.admin) return result;
          const body = result.body as
            { queues?: { readOnlyMode?: boolean; jobs?: { data?: unknown }[] }[] } | undefined;
          for (const queue of body?.queues ?? []) {
            queue.readOnlyMode = true;
            if (queue.jobs)
              queue.jobs = queue.jobs.filter((job) => tenantOfJobData(job.data) === principal.tenant);
          }
          return result;
        },
      },
    },
  });
  await app.register(async (scope) => {
    scope.addHook("onRequest", boardAuth(options.auth, basePath));
    await scope.register(serverAdapter.registerPlugin(), { prefix: basePath });
  });
}
