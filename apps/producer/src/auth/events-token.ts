import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { AgentryError, isTenantId, systemClock } from "@agentry/core";
import { isTaskId } from "@agentry/runtime";

/** How long a minted events token is accepted. @defaultValue 10 minutes */
export const DEFAULT_EVENTS_TOKEN_TTL_MS = 10 * 60_000;

/** Shortest accepted `AGENTRY_EVENTS_TOKEN_SECRET`: a guessable secret lets anyone mint tokens. */
export const MIN_EVENTS_TOKEN_SECRET_LENGTH = 32;

// Tokens longer than this are refused before any decoding: the query string is attacker-controlled.
const MAX_TOKEN_LENGTH = 1024;
const VERSION = "v1";

const claimsSchema = z.object({ t: z.string(), k: z.string(), e: z.number().int().positive() }).strict();

/** What a valid events token grants: reading one task's event stream, as its tenant. */
export interface EventsTokenClaims {
  tenant: string;
  taskId: string;
  /** Epoch milliseconds after which the token is refused. */
  expiresAt: number;
}

/** Options for {@link EventsTokens}. */
export interface EventsTokensOptions {
  /**
   * The secret tokens are signed with; every replica that should accept a token needs the same one.
   * @defaultValue a random secret of this process: its tokens work on this replica only
   */
  secret?: string;
  /** @defaultValue {@link DEFAULT_EVENTS_TOKEN_TTL_MS} */
  ttlMs?: number;
  /** Internal. For test use only. May change without notice. */
  _internal?: { now?: () => number };
}

const b64 = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/**
 * Short-lived, HMAC-SHA256-signed tokens that let a browser's EventSource (which cannot send an
 * Authorization header) read ONE task's events as its tenant. A token is `v1.<claims>.<signature>`
 * with the claims tenant, task id and expiry; it grants nothing else, so one that leaks through a
 * URL or a log exposes one task's progress until it expires.
 */
export class EventsTokens {
  /** True when no secret was configured and a random per-process one is in use. */
  readonly ephemeral: boolean;
  readonly ttlMs: number;
  private readonly key: Buffer;
  private readonly now: () => number;

  constructor(options: EventsTokensOptions = {}) {
    this.ephemeral = options.secret === undefined;
    const secret = options.secret ?? randomBytes(32).toString("base64url");
    if (secret.length < MIN_EVENTS_TOKEN_SECRET_LENGTH) {
      throw new AgentryError(
        "INVALID_CONFIG",
        `the events token secret must be at least ${MIN_EVENTS_TOKEN_SECRET_LENGTH} characters`,
      );
    }
    // A key of its own: the same secret reused elsewhere never yields signatures valid here.
    this.key = Buffer.from(hkdfSync("sha256", secret, "agentry", "agentry events token v1", 32));
    this.ttlMs = options.ttlMs ?? DEFAULT_EVENTS_TOKEN_TTL_MS;
    // The deployment's clock: a token minted by one producer replica is checked by another.
    this.now = options._internal?.now ?? (() => systemClock.now());
  }

  /** A token for one task of one tenant, valid for `ttlMs` from now. */
  mint(tenant: string, taskId: string): { token: string; expiresAt: number } {
    const expiresAt = this.now() + this.ttlMs;
    const body = `${VERSION}.${b64(JSON.stringify({ t: tenant, k: taskId, e: expiresAt }))}`;
    return { token: `${body}.${this.sign(body)}`, expiresAt };
  }

  /**
   * The claims of a valid token. A malformed, forged or expired token throws `UNAUTHORIZED`
   * (the reason is in the message only: every refusal looks the same to the caller's status code).
   */
  verify(token: string): EventsTokenClaims {
    const refuse = (why: string) => new AgentryError("UNAUTHORIZED", `Invalid events token: ${why}`);
    if (token.length > MAX_TOKEN_LENGTH) throw refuse("malformed");
    const parts = token.split(".");
    if (parts.length !== 3 || parts[0] !== VERSION) throw refuse("malformed");
    const body = `${parts[0]}.${parts[1]}`;
    const given = Buffer.from(parts[2] ?? "", "base64url");
    const expected = Buffer.from(this.sign(body), "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw refuse("bad signature");
    let claims: z.infer<typeof claimsSchema>;
    try {
      claims = claimsSchema.parse(JSON.parse(Buffer.from(parts[1] ?? "", "base64url").toString("utf8")));
    } catch {
      throw refuse("malformed");
    }
    if (!isTenantId(claims.t) || !isTaskId(claims.k)) throw refuse("malformed");
    if (this.now() >= claims.e) throw refuse("expired");
    return { tenant: claims.t, taskId: claims.k, expiresAt: claims.e };
  }

  private sign(body: string): string {
    return createHmac("sha256", this.key).update(body).digest("base64url");
  }
}
