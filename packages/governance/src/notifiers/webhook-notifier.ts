import { AgentryError, sleep } from "@agentry/core";
import type { ApprovalRequestedEvent, Notifier } from "./notifier.js";

/** Options for {@link WebhookNotifier}. */
export interface WebhookNotifierOptions {
  url: string;
  /** Per attempt. @defaultValue 5000 */
  timeoutMs?: number;
  /** Attempts after the first. @defaultValue 3 */
  retries?: number;
  /** First backoff; doubles each retry (with jitter up to +50%). @defaultValue 200 */
  backoffMs?: number;
  /** Extra request headers (e.g. a shared secret). */
  headers?: Record<string, string>;
}

/**
 * POSTs each event as JSON. Retries network errors, timeouts, 429 and 5xx with exponential
 * backoff; other 4xx are not retried. After the last attempt throws `INTERNAL` (retryable)
 * with `details: {url, attempts, status?}`.
 */
export class WebhookNotifier implements Notifier {
  private readonly url: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly headers: Record<string, string>;

  constructor(options: WebhookNotifierOptions) {
    this.url = options.url;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.retries = options.retries ?? 3;
    this.backoffMs = options.backoffMs ?? 200;
    this.headers = options.headers ?? {};
  }

  async notify(event: ApprovalRequestedEvent): Promise<void> {
    const body = JSON.stringify(event);
    let last = "";
    let status: number | undefined;
    let attempts = 0;
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      attempts += 1;
      if (attempt > 0) await sleep(this.backoffMs * 2 ** (attempt - 1) * (1 + Math.random() / 2));
      try {
        const res = await fetch(this.url, {
          method: "POST",
          headers: { "content-type": "application/json", ...this.headers },
          body,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return;
        status = res.status;
        last = `HTTP ${res.status}`;
        if (res.status < 500 && res.status !== 429) break;
      } catch (err) {
        status = undefined;
        last =
          err instanceof Error && err.name === "TimeoutError"
            ? `timed out after ${this.timeoutMs} ms`
            : String((err as Error).message ?? err);
      }
    }
    throw new AgentryError("INTERNAL", `webhook ${this.url} failed: ${last}`, {
      retryable: true,
      details: { url: this.url, attempts, ...(status === undefined ? {} : { status }) },
    });
  }
}
