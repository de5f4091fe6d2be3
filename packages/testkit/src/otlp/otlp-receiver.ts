import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

/** One HTTP request the receiver got, as sent. */
export interface OtlpRequest {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

/** An attribute value decoded from OTLP/JSON (`AnyValue`). */
export type OtlpValue = string | number | boolean | OtlpValue[] | undefined;

/** One span decoded from an OTLP/JSON trace export, with its resource. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, OtlpValue>;
  /** The attributes of the resource that exported it (`service.name`, `service.version`...). */
  resource: Record<string, OtlpValue>;
  /** Name of the instrumentation scope (the tracer). */
  scope: string;
  links: { traceId: string; spanId: string }[];
}

/** A running receiver. */
export interface OtlpReceiver {
  /** Base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` (spans are POSTed to `<endpoint>/v1/traces`). */
  readonly endpoint: string;
  /** Every request so far, in arrival order. */
  readonly requests: readonly OtlpRequest[];
  /** Every span received on `/v1/traces` so far, in arrival order. */
  spans(): ReceivedSpan[];
  close(): Promise<void>;
}

/** OTLP `SpanKind` values. */
export const OTLP_SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;

interface JsonAnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: JsonAnyValue[] };
}
interface JsonKeyValue {
  key: string;
  value: JsonAnyValue;
}
interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  attributes?: JsonKeyValue[];
  links?: { traceId: string; spanId: string }[];
}
interface JsonExport {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: { scope?: { name?: string }; spans?: JsonSpan[] }[];
  }[];
}

/**
 * Starts a local OTLP/HTTP receiver on 127.0.0.1: it records every request, decodes trace exports
 * sent as OTLP/JSON (what `@opentelemetry/exporter-trace-otlp-http` sends) and answers 200 with an
 * empty JSON body. A body that is not JSON is recorded but yields no spans.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const requests: OtlpRequest[] = [];
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.method === "POST" && req.url === "/v1/traces") spans.push(...decodeTraceExport(body));
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    spans: () => [...spans],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The spans of one OTLP/JSON trace export body; none when it is not JSON. */
export function decodeTraceExport(body: string): ReceivedSpan[] {
  let parsed: JsonExport;
  try {
    parsed = JSON.parse(body) as JsonExport;
  } catch {
    return [];
  }
  const out: ReceivedSpan[] = [];
  for (const rs of parsed.resourceSpans ?? []) {
    const resource = attributesOf(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? "",
          name: s.name,
          kind: s.kind ?? 0,
          attributes: attributesOf(s.attributes),
          resource,
          scope: ss.scope?.name ?? "",
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
        });
      }
    }
  }
  return out;
}

/** The ancestors of a span among `spans`, nearest first (stops where a parent was not received). */
export function ancestorsOf(span: ReceivedSpan, spans: readonly ReceivedSpan[]): ReceivedSpan[] {
  const byId = new Map(spans.map((s) => [`${s.traceId}/${s.spanId}`, s]));
  const out: ReceivedSpan[] = [];
  let current = span;
  while (current.parentSpanId !== "") {
    const parent = byId.get(`${current.traceId}/${current.parentSpanId}`);
    if (!parent || out.includes(parent)) break;
    out.push(parent);
    current = parent;
  }
  return out;
}

function attributesOf(list: JsonKeyValue[] | undefined): Record<string, OtlpValue> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));
}

function valueOf(v: JsonAnyValue | undefined): OtlpValue {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(valueOf);
  return undefined;
}
