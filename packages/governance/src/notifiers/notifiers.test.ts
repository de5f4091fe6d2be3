import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import { LogNotifier } from "./log-notifier.js";
import type { ApprovalRequestedEvent } from "./notifier.js";
import { WebhookNotifier } from "./webhook-notifier.js";

const event: ApprovalRequestedEvent = {
  type: "approval-requested",
  approvalId: "apr_1",
  taskId: "task_1",
  tenant: "acme",
  userId: "u1",
  tool: "delete_resource",
  input: { resource: "db", env: "staging" },
  approvers: ["alice"],
  quorum: 1,
  expiresAt: 1_000,
  reason: "deletes need approval",
};

const servers: ReturnType<typeof createServer>[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise<void>((r) => s.close(() => r()));
    }),
  );
});

async function serve(
  handler: (req: IncomingMessage, body: string, res: ServerResponse) => void,
): Promise<string> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => handler(req, body, res));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
}

describe("WebhookNotifier", () => {
  it("POSTs the event as JSON with the configured headers, retrying after a 500", async () => {
    const seen: { body: unknown; auth: string | undefined; type: string | undefined }[] = [];
    const url = await serve((req, body, res) => {
      seen.push({
        body: JSON.parse(body),
        auth: req.headers["x-secret"] as string | undefined,
        type: req.headers["content-type"],
      });
      res.statusCode = seen.length === 1 ? 500 : 204;
      res.end();
    });
    await new WebhookNotifier({ url, retries: 2, backoffMs: 5, headers: { "x-secret": "s3" } }).notify(event);
    expect(seen).toHaveLength(2);
    expect(seen[1]).toEqual({ body: event, auth: "s3", type: "application/json" });
  });

  it("gives up after the retries on a server that hangs (timeout)", async () => {
    let calls = 0;
    // Never answers (afterEach drops the connections). The timeout is long enough for each attempt
    // to reach the server on a busy machine, so the server's count is a fact, not a race.
    const url = await serve(() => {
      calls += 1;
    });
    const err = await new WebhookNotifier({ url, timeoutMs: 1_000, retries: 1, backoffMs: 5 })
      .notify(event)
      .catch((e: unknown) => e);
    expect(AgentryError.isInstance(err)).toBe(true);
    expect((err as AgentryError).message).toMatch(/timed out after 1000 ms/);
    expect((err as AgentryError).details).toMatchObject({ attempts: 2 });
    // Each timed-out attempt reached the server; on a loaded machine the second may be read
    // only after the notifier has given up on it.
    await expect.poll(() => calls).toBe(2);
  });

  it("does not retry a 400", async () => {
    let calls = 0;
    const url = await serve((_req, _body, res) => {
      calls += 1;
      res.statusCode = 400;
      res.end();
    });
    const err = await new WebhookNotifier({ url, retries: 3, backoffMs: 5 })
      .notify(event)
      .catch((e: unknown) => e);
    expect((err as AgentryError).details).toMatchObject({ status: 400, attempts: 1 });
    expect(calls).toBe(1);
  });
});

describe("LogNotifier", () => {
  it("logs the approval id and how to approve it", async () => {
    const lines: { obj: Record<string, unknown>; msg: string }[] = [];
    await new LogNotifier({
      info: (obj: Record<string, unknown>, msg: string) => lines.push({ obj, msg }),
    } as never).notify(event);
    expect(lines[0]?.obj).toMatchObject({
      event: "approval-requested",
      approvalId: "apr_1",
      approvers: ["alice"],
    });
    expect(lines[0]?.msg).toContain("agentry approvals approve apr_1");
  });
});
