import { AgentryError, isTenantId, TENANT_ID_RULE } from "@agentry/core";

/** A tenant's share settings, shared by every worker through Redis. */
export interface TenantSettings {
  /** At most this many of the tenant's tasks run at once, across all workers; `null` = no cap. */
  maxRunning: number | null;
  /** The tenant's share of free slots when several tenants have work, relative to the others'. @defaultValue 1 */
  weight: number;
}

/** A change to {@link TenantSettings}: a field left out keeps its value; `maxRunning: null` removes the cap. */
export interface TenantSettingsPatch {
  maxRunning?: number | null;
  weight?: number;
}

/** The weight of a tenant nobody configured. */
export const DEFAULT_TENANT_WEIGHT = 1;

/**
 * Allowed weights. A task of weight w advances its tenant's virtual clock by 1/w, so the range
 * keeps one task's step between 0.001 and 100 units of the 2^21 priorities BullMQ has.
 */
export const TENANT_WEIGHT_RANGE = { min: 0.01, max: 1000 } as const;

/** Largest `maxRunning`. */
export const MAX_RUNNING_LIMIT = 1_000_000;

/** A tenant's settings and what it has in the queue right now. */
export interface TenantLoad extends TenantSettings {
  tenant: string;
  /** Slots held: attempts running, and slots handed to a capped task that is on its way to a worker. */
  running: number;
  /** Tasks submitted and not yet started, including those held back by `maxRunning`. */
  waiting: number;
}

/**
 * One load per tenant from the loads each queue shard reported: settings and running slots are
 * global (every shard reads the same), waiting tasks are per shard and add up. Sorted by tenant.
 */
export function mergeTenantLoads(perShard: readonly (readonly TenantLoad[])[]): TenantLoad[] {
  const merged = new Map<string, TenantLoad>();
  for (const loads of perShard)
    for (const load of loads) {
      const seen = merged.get(load.tenant);
      merged.set(load.tenant, seen ? { ...seen, waiting: seen.waiting + load.waiting } : { ...load });
    }
  return [...merged.values()].sort((a, b) => (a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : 0));
}

/** Throws `INVALID_INPUT` unless `tenant` is a well-formed tenant id. */
export function checkTenant(tenant: string): void {
  if (!isTenantId(tenant))
    throw new AgentryError("INVALID_INPUT", `Invalid tenant id "${tenant}": expected ${TENANT_ID_RULE}`);
}

/** Checks a settings change; throws `INVALID_INPUT` naming the field. */
export function checkTenantSettingsPatch(patch: TenantSettingsPatch): void {
  const { maxRunning, weight } = patch;
  if (
    maxRunning !== undefined &&
    maxRunning !== null &&
    (!Number.isInteger(maxRunning) || maxRunning < 1 || maxRunning > MAX_RUNNING_LIMIT)
  ) {
    throw new AgentryError(
      "INVALID_INPUT",
      `maxRunning must be a whole number from 1 to ${MAX_RUNNING_LIMIT}, or none (got ${String(maxRunning)})`,
    );
  }
  if (
    weight !== undefined &&
    (!Number.isFinite(weight) || weight < TENANT_WEIGHT_RANGE.min || weight > TENANT_WEIGHT_RANGE.max)
  ) {
    throw new AgentryError(
      "INVALID_INPUT",
      `weight must be a number from ${TENANT_WEIGHT_RANGE.min} to ${TENANT_WEIGHT_RANGE.max} (got ${String(weight)})`,
    );
  }
}
