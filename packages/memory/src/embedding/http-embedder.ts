import { AgentryError, positiveInt } from "@agentry/core";
import type { Embedder } from "./embedder.js";

/** Options for {@link HttpEmbedder}. */
export interface HttpEmbedderOptions {
  /** Server root, e.g. `https://api.openai.com` or `http://localhost:11434` (a trailing `/v1` is accepted). */
  baseURL: string;
  /** Model name sent as `model`. */
  model: string;
  /** Vector length the model returns; checked on every response. */
  dimensions: number;
  /** Sent as `Authorization: Bearer …` when set. */
  apiKey?: string;
  /** Per-request timeout. @defaultValue 30_000 */
  timeoutMs?: number;
  /** Most texts per request; larger inputs are split. @defaultValue 96 */
  batchSize?: number;
  /** Extra headers (gateways). */
  headers?: Record<string, string>;
  /** Internal. For test use only. May change without notice. */
  _internal?: { fetch?: typeof fetch };
}

interface EmbeddingsResponse {
  data?: { embedding?: unknown; index?: unknown }[];
}

/**
 * An embedder for OpenAI-compatible `POST /v1/embeddings` endpoints (OpenAI, Voyage-compatible
 * gateways, Ollama, vLLM). Failures are AgentryErrors: `PROVIDER_AUTH` (401/403),
 * `PROVIDER_RATE_LIMITED` (429, with `retryAfterMs`), `PROVIDER_BAD_REQUEST` (other 4xx),
 * `PROVIDER_UNAVAILABLE` (5xx, network), `TIMEOUT`, `PROVIDER_BAD_RESPONSE` (malformed body,
 * wrong dimensions).
 */
export class HttpEmbedder implements Embedder {
  readonly dimensions: number;
  readonly id: string;
  private readonly url: string;
  private readonly options: HttpEmbedderOptions;
  private readonly timeoutMs: number;
  private readonly batchSize: number;
  private readonly fetch: typeof fetch;

  constructor(options: HttpEmbedderOptions) {
    this.options = options;
    this.dimensions = positiveInt(options.dimensions, "dimensions");
    this.timeoutMs = positiveInt(options.timeoutMs ?? 30_000, "timeoutMs");
    this.batchSize = positiveInt(options.batchSize ?? 96, "batchSize");
    const root = options.baseURL.replace(/\/+$/, "");
    this.url = root.endsWith("/v1") ? `${root}/embeddings` : `${root}/v1/embeddings`;
    this.id = `http:${options.model}:${this.dimensions}`;
    this.fetch = options._internal?.fetch ?? globalThis.fetch;
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += this.batchSize) {
      out.push(...(await this.request(texts.slice(i, i + this.batchSize))));
    }
    return out;
  }

  private async request(input: string[]): Promise<Float32Array[]> {
    const headers: Record<string, string> = { "content-type": "application/json", ...this.options.headers };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    let response: Response;
    try {
      response = await this.fetch(this.url, {
        method: "POST",
        headers,
        body: JSON.stringify({ model: this.options.model, input }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) {
        throw new AgentryError("TIMEOUT", `Embeddings request timed out after ${this.timeoutMs} ms`, {
          cause: err,
          details: { url: this.url },
        });
      }
      throw new AgentryError("PROVIDER_UNAVAILABLE", `Embeddings request failed: ${String(err)}`, {
        cause: err,
        details: { url: this.url },
      });
    }
    if (!response.ok) throw await httpError(response, this.url);
    let body: EmbeddingsResponse;
    try {
      body = (await response.json()) as EmbeddingsResponse;
    } catch (err) {
      throw new AgentryError("PROVIDER_BAD_RESPONSE", "Embeddings response is not JSON", { cause: err });
    }
    const data = body.data;
    if (!Array.isArray(data) || data.length !== input.length) {
      throw new AgentryError(
        "PROVIDER_BAD_RESPONSE",
        `Embeddings response has no data for ${input.length} inputs`,
      );
    }
    const vectors: Float32Array[] = new Array<Float32Array>(input.length);
    data.forEach((item, position) => {
      const index = typeof item.index === "number" ? item.index : position;
      const embedding = item.embedding;
      if (
        !Array.isArray(embedding) ||
        embedding.length !== this.dimensions ||
        !embedding.every((v) => typeof v === "number") ||
        index < 0 ||
        index >= input.length
      ) {
        throw new AgentryError(
          "PROVIDER_BAD_RESPONSE",
          `Embedding ${position} is not ${this.dimensions} numbers (model ${this.options.model})`,
          { details: { got: Array.isArray(embedding) ? embedding.length : typeof embedding } },
        );
      }
      vectors[index] = Float32Array.from(embedding as number[]);
    });
    return vectors;
  }
}

async function httpError(response: Response, url: string): Promise<AgentryError> {
  const text = (await response.text().catch(() => "")).slice(0, 500);
  const details = { status: response.status, url, body: text };
  const message = `Embeddings endpoint answered ${response.status}: ${text}`;
  if (response.status === 401 || response.status === 403)
    return new AgentryError("PROVIDER_AUTH", message, { details });
  if (response.status === 429) {
    const header = response.headers.get("retry-after");
    const seconds = header === null ? Number.NaN : Number(header);
    return new AgentryError("PROVIDER_RATE_LIMITED", message, {
      details,
      ...(Number.isFinite(seconds) && seconds >= 0 ? { retryAfterMs: Math.round(seconds * 1000) } : {}),
    });
  }
  if (response.status >= 500) return new AgentryError("PROVIDER_UNAVAILABLE", message, { details });
  return new AgentryError("PROVIDER_BAD_REQUEST", message, { details });
}
