import { existsSync, mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import type { FastifyInstance } from "fastify";
import { createLogger } from "@agentry/core";
import { useTestRedis } from "@agentry/testkit";
import { AgentryClient, AgentWorker, type TaskHandler, type TaskState } from "@agentry/runtime";
import { BOARD_COOKIE, BOARD_PATH, buildProducerApp, type ApiKeys } from "../../src/index.js";

// Debian's `chromium` package; never a downloaded browser (CI installs it with apt).
const CHROMIUM = "/usr/bin/chromium";
// Without the background-networking switches Chromium keeps dialling out, and this closed
// network refuses those connections many at a time.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const ADMIN_KEY = "key-board-admin";
const KEYS: ApiKeys = new Map([[ADMIN_KEY, { tenant: "ops", name: "ops", admin: true }]]);
const logger = createLogger({ name: "bull-board-browser-test", level: "silent" });
const redis = useTestRedis("producer-board");

/** A handler like the real one, reduced to its outcomes: deletes wait for approval, the rest completes. */
const handler: TaskHandler = async ({ payload }) => {
  if (payload.prompt.includes("delete")) {
    return {
      type: "park",
      parked: { reason: "approval", approvalIds: ["apr_demo"], until: Date.now() + 3600_000 },
    };
  }
  return {
    type: "completed",
    result: {
      text: `done: ${payload.prompt}`,
      steps: 1,
      usage: { input: 12, output: 4, cacheCreationInput: 0, cacheReadInput: 0 },
      costMicroUsd: 96,
      model: "scripted",
      finishedAt: Date.now(),
    },
  };
};

let client: AgentryClient;
let worker: AgentWorker;
let app: FastifyInstance;
let baseUrl: string;
let context: BrowserContext | undefined;
let userDataDir: string | undefined;

async function submit(prompt: string): Promise<string> {
  const response = await fetch(`${baseUrl}/v1/tasks`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ prompt }),
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { taskId: string }).taskId;
}

/** Waits until the task's status reaches `state` (the bound is a guard, not a timing claim). */
async function waitForState(taskId: string, state: TaskState): Promise<void> {
  await expect
    .poll(async () => (await client.status(taskId)).state, { timeout: 30_000, interval: 50 })
    .toBe(state);
}

/** The job count each status tab of the open queue page shows, by status (a tab without a number counts 0). */
async function tabCounts(page: Page): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const link of await page.locator(`a[href*="/queue/${client.queueName}?status="]`).all()) {
    const status = new URL(String(await link.getAttribute("href")), baseUrl).searchParams.get("status");
    if (status) counts[status] = Number(/\d+/.exec((await link.textContent()) ?? "")?.[0] ?? 0);
  }
  return counts;
}

async function launchChromium(): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: the Bull Board browser test needs Debian's chromium package. ` +
        "Install it with `apt-get update && apt-get install -y chromium` (as root; .ci/run does this in CI). " +
        "Never `playwright install`: no browser is downloaded.",
    );
  }
  // A fresh, empty profile per run: no cookie or cache from an earlier run can log us in.
  userDataDir = mkdtempSync(join(tmpdir(), "agentry-chromium-"));
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
}

/** Opens a job list of the board's queue through its status tab and waits for the job's id. */
async function openJobList(page: Page, tab: "Completed" | "Delayed", taskId: string): Promise<void> {
  await page.getByRole("link", { name: tab, exact: false }).first().click();
  await page.waitForURL((url) => url.searchParams.get("status") === tab.toLowerCase());
  await page.getByText(taskId).first().waitFor();
}

beforeAll(async () => {
  client = new AgentryClient({ url: redis.url, prefix: redis.prefix });
  app = await buildProducerApp({ client, apiKeys: KEYS, logger });
  await app.listen({ port: 0, host: "127.0.0.1" });
  baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  worker = new AgentWorker({ url: redis.url, prefix: redis.prefix, handler, logger, concurrency: 2 });
  await worker.start();
});

afterAll(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await worker?.close();
  await app?.close();
  await client?.close();
});

describe("Bull Board in a real browser", () => {
  it("refuses the board without a key: 401 UNAUTHORIZED", async () => {
    const response = await fetch(`${baseUrl}${BOARD_PATH}`);
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("UNAUTHORIZED");
  });

  it("logs in with ?key=, shows the Agentry queue with its job counts, a completed task and one awaiting approval", async () => {
    const completedId = await submit("What is the weather in Paris?");
    const parkedId = await submit("delete the staging database");
    await waitForState(completedId, "completed");
    await waitForState(parkedId, "awaiting_approval");

    context = await launchChromium();
    const page = context.pages()[0] ?? (await context.newPage());
    // Fail on a missing element well before the test's own timeout, with Playwright's message.
    page.setDefaultTimeout(15_000);

    const refused = await page.goto(`${baseUrl}${BOARD_PATH}`);
    expect(refused?.status()).toBe(401);

    // Logging in: the key is traded for an HttpOnly cookie and leaves the address bar.
    const board = await page.goto(`${baseUrl}${BOARD_PATH}?key=${ADMIN_KEY}`);
    expect(board?.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe(BOARD_PATH);
    expect(page.url()).not.toContain(ADMIN_KEY);
    const cookie = (await context.cookies(`${baseUrl}${BOARD_PATH}`)).find((c) => c.name === BOARD_COOKIE);
    expect(cookie?.httpOnly).toBe(true);

    // The overview: the one queue of this prefix, by name in the menu and by display name with
    // its job total on its card.
    await page.getByText("Agentry tasks").first().waitFor();
    expect(
      await page.locator("nav a[title]").evaluateAll((links) => links.map((a) => a.getAttribute("title"))),
    ).toEqual([client.queueName]);
    await expect
      .poll(() => page.locator("main").innerText(), { timeout: 15_000 })
      .toMatch(/Agentry tasks\s+2 Jobs/);

    await page.getByText("Agentry tasks").first().click();
    await page.waitForURL((url) => url.pathname === `${BOARD_PATH}/queue/${client.queueName}`);

    // Each status tab shows its count: one completed, one delayed (the parked task), nothing else.
    await expect
      .poll(() => tabCounts(page), { timeout: 15_000 })
      .toEqual({
        active: 0,
        waiting: 0,
        "waiting-children": 0,
        prioritized: 0,
        completed: 1,
        failed: 0,
        delayed: 1,
      });

    await openJobList(page, "Completed", completedId);
    await page.getByText("What is the weather in Paris?").first().waitFor();
    await openJobList(page, "Delayed", parkedId);
    // The paused task's card shows its prompt and why it is parked.
    await page.getByText("delete the staging database").first().waitFor();
    await page.getByText('"approval"', { exact: true }).first().waitFor();
    expect(await page.getByText(completedId).count()).toBe(0);
  }, 60_000);
});
