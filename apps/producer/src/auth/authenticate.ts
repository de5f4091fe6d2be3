import type { FastifyReply, FastifyRequest } from "fastify";
import { AgentryError } from "@agentry/core";
import { httpErrorOf } from "../http/http-error.js";
import type { ApiKeyAuthenticator, Principal } from "./api-keys.js";
import type { EventsTokens } from "./events-token.js";

/** Name of the cookie a browser gets after logging in to Bull Board with `?key=`. */
export const BOARD_COOKIE = "agentry_board_key";

// Keyed by the raw headers object: Bull Board's handlers see that same object, not the request.
const principals = new WeakMap<object, Principal>();

/** The caller of an authenticated request. Throws `UNAUTHORIZED` outside an authenticated route. */
export function principalOf(request: FastifyRequest): Principal {
  const principal = principals.get(request.raw.headers);
  if (!principal) throw new AgentryError("UNAUTHORIZED", "Missing or invalid API key");
  return principal;
}

/** The caller whose request carried these (raw) headers, as Bull Board's handler hooks see them. */
export function principalOfHeaders(headers: object): Principal | undefined {
  return principals.get(headers);
}

/** `Authorization: Bearer <key>` → key. */
export function bearerKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== "string") return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

function cookieKey(request: FastifyRequest): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== "string") return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === BOARD_COOKIE) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

async function deny(reply: FastifyReply, message: string): Promise<FastifyReply> {
  const { status, body, headers } = httpErrorOf(new AgentryError("UNAUTHORIZED", message));
  return reply.code(status).headers(headers).send(body);
}

/**
 * An `onRequest` hook for the API: a valid bearer key is required; the request is then served
 * for the key's tenant. Missing or unknown key → 401 `UNAUTHORIZED`.
 */
export function apiAuth(auth: ApiKeyAuthenticator) {
  return async function authenticateApi(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply | undefined> {
    const principal = auth.authenticate(bearerKey(request));
    if (!principal) return deny(reply, "Missing or invalid API key (send Authorization: Bearer <key>)");
    principals.set(request.raw.headers, principal);
    request.log = request.log.child({ tenant: principal.tenant, keyName: principal.name });
    return undefined;
  };
}

/**
 * An `onRequest` hook for the Bull Board pages. Accepts the bearer key, or the login cookie, or
 * `?key=<key>` once: a valid query key sets an HttpOnly cookie (scoped to `basePath`) and redirects
 * to the same URL without the key, so the key does not stay in the address bar or history.
 */
export function boardAuth(auth: ApiKeyAuthenticator, basePath: string) {
  return async function authenticateBoard(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply | undefined> {
    const url = new URL(request.url, "http://agentry.invalid");
    const queryKey = url.searchParams.get("key");
    if (queryKey !== null) {
      const principal = auth.authenticate(queryKey);
      if (!principal) return deny(reply, "Invalid API key");
      url.searchParams.delete("key");
      const secure = request.protocol === "https" ? "; Secure" : "";
      const cookie = `${BOARD_COOKIE}=${encodeURIComponent(queryKey)}; Path=${basePath}; HttpOnly; SameSite=Lax; Max-Age=43200${secure}`;
      return reply
        .code(303)
        .header("set-cookie", cookie)
        .header("location", `${url.pathname}${url.search}`)
        .send();
    }
    const principal = auth.authenticate(bearerKey(request) ?? cookieKey(request));
    if (!principal)
      return deny(
        reply,
        "Missing or invalid API key (send Authorization: Bearer <key>, or open the page once with ?key=<key>)",
      );
    principals.set(request.raw.headers, principal);
    request.log = request.log.child({ tenant: principal.tenant, keyName: principal.name });
    return undefined;
  };
}

/**
 * An `onRequest` hook for the task event stream: the bearer key as on every API route, or, for
 * browsers (EventSource cannot send headers), `?token=` minted by `POST /v1/tasks/:id/events-token`.
 * A token authenticates as its tenant for its one task only; a bad, forged or expired one → 401.
 */
export function eventsAuth(auth: ApiKeyAuthenticator, tokens: EventsTokens) {
  const api = apiAuth(auth);
  return async function authenticateEvents(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply | undefined> {
    const token = (request.query as Record<string, unknown> | undefined)?.token;
    if (bearerKey(request) !== undefined || token === undefined) return api(request, reply);
    if (typeof token !== "string") return deny(reply, "Invalid events token: malformed");
    let claims;
    try {
      claims = tokens.verify(token);
    } catch (err) {
      return deny(reply, AgentryError.from(err).message);
    }
    principals.set(request.raw.headers, {
      tenant: claims.tenant,
      name: "events-token",
      admin: false,
      taskId: claims.taskId,
    });
    request.log = request.log.child({ tenant: claims.tenant, keyName: "events-token" });
    return undefined;
  };
}
