import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { AgentryError, defineScripts, keySpace, MAX_AUDIT_LANES, type Logger } from "@agentry/core";

const scripts = defineScripts<{
  holdAuditLane: (
    keys: [owner: string],
    args: [op: "take" | "renew" | "release", owner: string, leaseMs: number],
  ) => 0 | 1;
}>(import.meta.url, { holdAuditLane: "./hold-audit-lane-1.lua" });

/** Options for {@link acquireAuditLane}. */
export interface AuditLaneOptions {
  redis: Redis;
  /** The deployment's base prefix: lane leases live there, one per lane for every chain. */
  prefix: string;
  /** How many lanes each chain has (`AGENTRY_AUDIT_LANES`). */
  lanes: number;
  /** Who holds the lease (shown in its key's value). @defaultValue a random id */
  owner?: string;
  /** How long a lease lasts without renewal; it is renewed every third of it. @defaultValue 30 s */
  leaseMs?: number;
  logger?: Logger;
}

/** A process's audit lane (see {@link acquireAuditLane}). */
export interface AuditLaneLease {
  /** The lane this process writes every chain on. */
  readonly lane: number;
  /** Stops renewing and frees the lane for another process. */
  release(): Promise<void>;
}

/**
 * Picks the audit lane a worker process writes on, so that processes do not race each other for
 * one chain head (each race costs a whole step write sent again). Lanes 1 … lanes−1 are tried
 * first (lane 0 stays with the producers and the CLI), then lane 0; the first free one is leased
 * (`<prefix>:audit:lane:<n>:owner`, renewed every third of `leaseMs`). When every lane is taken
 * the process shares one, chosen at random: correct (the compare-and-append orders every
 * writer), only slower. With one lane this is lane 0, without touching Redis.
 *
 * @throws `INVALID_CONFIG` when `lanes` is not a whole number from 1 to {@link MAX_AUDIT_LANES}.
 */
export async function acquireAuditLane(options: AuditLaneOptions): Promise<AuditLaneLease> {
  const { lanes } = options;
  if (!Number.isInteger(lanes) || lanes < 1 || lanes > MAX_AUDIT_LANES)
    throw new AgentryError(
      "INVALID_CONFIG",
      `AGENTRY_AUDIT_LANES must be a whole number from 1 to ${MAX_AUDIT_LANES} (got ${lanes})`,
    );
  if (lanes === 1) return { lane: 0, release: async () => undefined };
  const keys = keySpace(options.prefix);
  const ownerKey = (lane: number) => keys.key("audit", "lane", String(lane), "owner");
  const owner = options.owner ?? randomUUID();
  const leaseMs = options.leaseMs ?? 30_000;
  const order = [...Array.from({ length: lanes - 1 }, (_, i) => i + 1), 0];
  let lane: number | undefined;
  for (const candidate of order) {
    if ((await scripts.holdAuditLane(options.redis, [ownerKey(candidate)], ["take", owner, leaseMs])) === 1) {
      lane = candidate;
      break;
    }
  }
  if (lane === undefined) {
    const shared = Math.floor(Math.random() * lanes);
    options.logger?.warn(
      { event: "audit-lane-shared", lanes, lane: shared },
      `every one of the ${lanes} audit lanes is leased: sharing lane ${shared} (raise AGENTRY_AUDIT_LANES to at least the number of worker processes)`,
    );
    return { lane: shared, release: async () => undefined };
  }
  const held = lane;
  let lost = false;
  const renew = setInterval(
    () => {
      scripts.holdAuditLane(options.redis, [ownerKey(held)], ["renew", owner, leaseMs]).then(
        (ok) => {
          if (ok === 0 && !lost) {
            lost = true;
            options.logger?.warn(
              { event: "audit-lane-lost", lane: held },
              `the lease of audit lane ${held} was taken by another process; both now write it (correct, slower)`,
            );
          } else if (ok === 1) lost = false;
        },
        () => undefined,
      );
    },
    Math.max(1, Math.floor(leaseMs / 3)),
  );
  renew.unref();
  return {
    lane: held,
    async release() {
      clearInterval(renew);
      await scripts
        .holdAuditLane(options.redis, [ownerKey(held)], ["release", owner, leaseMs])
        .catch(() => 0);
    },
  };
}
