import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isAgentryError } from "@agentry/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpEmbedder } from "./http-embedder.js";

type Handler = (req: IncomingMessage, body: { model: string; input: string[] }, res: ServerResponse) => void;

/** A tiny OpenAI-compatible embeddings server whose behaviour each test sets. */
let handler: Handler = () => undefined;
const requests: {
  url: string | undefined;
  auth: string | undefined;
  body: { model: string; input: string[] };
}[] = [];
let server: Server;
let baseURL: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = "";
    req.on("data", (chunk: Buffer) => (raw += chunk.toString()));
    req.on("end", () => {
      const body = JSON.parse(raw || "{}") as { model: string; input: string[] };
      requests.push({ url: req.url, auth: req.headers.authorization, body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const vectorFor = (text: string, dims: number) =>
  Array.from({ length: dims }, (_, i) => (text.length + i) / 10);

function answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

async function failure(promise: Promise<unknown>) {
  return promise.then(
    () => {
      throw new Error("expected a failure");
    },
    (err: unknown) => {
      if (!isAgentryError(err)) throw err;
      return err;
    },
  );
}

describe("HttpEmbedder", () => {
  it("posts {model, input} to /v1/embeddings and returns vectors in input order", async () => {
    handler = (_req, body, res) =>
      answer(res, 200, {
        object: "list",
        // Out of order on purpose: `index` says where each belongs.
        data: body.input
          .map((t, index) => ({ object: "embedding", index, embedding: vectorFor(t, 3) }))
          .reverse(),
      });
    requests.length = 0;
    const embedder = new HttpEmbedder({
      baseURL,
      model: "text-embedding-3-small",
      dimensions: 3,
      apiKey: "sk-test",
      batchSize: 2,
    });
    const vectors = await embedder.embed(["a", "bb", "ccc"]);
    expect(vectors.map((v) => Array.from(v).map((x) => Math.round(x * 10)))).toEqual([
      [1, 2, 3],
      [2, 3, 4],
      [3, 4, 5],
    ]);
    expect(requests.map((r) => [r.url, r.auth, r.body.model, r.body.input])).toEqual([
      ["/v1/embeddings", "Bearer sk-test", "text-embedding-3-small", ["a", "bb"]],
      ["/v1/embeddings", "Bearer sk-test", "text-embedding-3-small", ["ccc"]],
    ]);
    expect(embedder.id).toBe("http:text-embedding-3-small:3");
  });

  it("accepts a base URL that already ends in /v1 and sends no auth without a key", async () => {
    handler = (_req, body, res) =>
      answer(res, 200, { data: body.input.map((t) => ({ embedding: vectorFor(t, 2) })) });
    requests.length = 0;
    await new HttpEmbedder({ baseURL: `${baseURL}/v1/`, model: "nomic-embed-text", dimensions: 2 }).embed([
      "x",
    ]);
    expect(requests[0]?.url).toBe("/v1/embeddings");
    expect(requests[0]?.auth).toBeUndefined();
  });

  it("maps HTTP failures to typed errors", async () => {
    const embedder = new HttpEmbedder({ baseURL, model: "m", dimensions: 2 });
    handler = (_req, _body, res) => answer(res, 401, { error: { message: "bad key" } });
    expect((await failure(embedder.embed(["x"]))).code).toBe("PROVIDER_AUTH");
    handler = (_req, _body, res) => answer(res, 429, { error: "slow down" }, { "retry-after": "2" });
    const limited = await failure(embedder.embed(["x"]));
    expect(limited.code).toBe("PROVIDER_RATE_LIMITED");
    expect(limited.retryAfterMs).toBe(2_000);
    expect(limited.retryable).toBe(true);
    handler = (_req, _body, res) => answer(res, 400, { error: "bad input" });
    expect((await failure(embedder.embed(["x"]))).code).toBe("PROVIDER_BAD_REQUEST");
    handler = (_req, _body, res) => answer(res, 503, { error: "down" });
    expect((await failure(embedder.embed(["x"]))).code).toBe("PROVIDER_UNAVAILABLE");
  });

  it("rejects malformed bodies and wrong dimensions as PROVIDER_BAD_RESPONSE", async () => {
    const embedder = new HttpEmbedder({ baseURL, model: "m", dimensions: 4 });
    handler = (_req, body, res) =>
      answer(res, 200, { data: body.input.map((t) => ({ embedding: vectorFor(t, 3) })) });
    expect((await failure(embedder.embed(["x"]))).code).toBe("PROVIDER_BAD_RESPONSE");
    handler = (_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end("not json");
    };
    expect((await failure(embedder.embed(["x"]))).code).toBe("PROVIDER_BAD_RESPONSE");
    handler = (_req, _body, res) => answer(res, 200, { data: [] });
    expect((await failure(embedder.embed(["x"]))).code).toBe("PROVIDER_BAD_RESPONSE");
  });

  it("times out as TIMEOUT and reports an unreachable server as PROVIDER_UNAVAILABLE", async () => {
    handler = () => undefined; // never answers
    const slow = new HttpEmbedder({ baseURL, model: "m", dimensions: 2, timeoutMs: 100 });
    expect((await failure(slow.embed(["x"]))).code).toBe("TIMEOUT");
    const nowhere = new HttpEmbedder({ baseURL: "http://127.0.0.1:1", model: "m", dimensions: 2 });
    expect((await failure(nowhere.embed(["x"]))).code).toBe("PROVIDER_UNAVAILABLE");
  });
});
