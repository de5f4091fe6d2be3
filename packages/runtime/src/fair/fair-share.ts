import type { Cluster, Redis } from "ioredis";
import {
  AgentryError,
  DEFAULT_KEY_PREFIX,
  defineScripts,
  keySpace,
  systemClock,
  type Clock,
  type KeySpace,
} from "@agentry/core";
import { DEFAULT_QUEUE_NAME } from "../tasks/catalog.js";
import {
  DEFAULT_TENANT_WEIGHT,
  checkTenant,
  checkTenantSettingsPatch,
  type TenantLoad,
  type TenantSettings,
  type TenantSettingsPatch,
} from "./tenant-settings.js";

const scripts = defineScripts<{
  stampFairTags: (
    keys: [clock: string, finish: string, queued: string, tenants: string],
    args: [
      tenant: string,
      fair: "1" | "0",
      limit: number,
      unit: number,
      weight: number,
      ...taskIds: string[],
    ],
  ) => (string | number)[];
  admitTenantSlot: (
    keys: [settings: string, running: string],
    args: [taskId: string, member: string, now: number, leaseMs: number],
  ) => number;
  trackTenantTask: (
    keys: [clock: string, capped: string, queued: string, cappedTenants: string],
    args: [taskId: string, admitted: 0 | 1, priority: number, tenant: string, unit: number],
  ) => string;
  advanceFairClock: (
    keys: [clock: string, capped: string, cappedTenants: string],
    args: [tag: string, rebaseAt: number, unit: number, tenant: string, batch: number],
  ) => [rebaseDue: number, ...ids: string[]];
  handTenantSlots: (
    keys: [settings: string, running: string],
    args: [member: string, now: number, reservationMs: number, ...candidates: string[]],
  ) => string[];
  rebaseFairClock: (
    keys: [clock: string, prioritized: string, delayed: string, wait: string, active: string],
    args: [rebaseAt: number, jobKeyPrefix: string, unit: number],
  ) => number;
}>(import.meta.url, {
  stampFairTags: "./stamp-fair-tags-4.lua",
  admitTenantSlot: "./admit-tenant-slot-2.lua",
  trackTenantTask: "./track-tenant-task-4.lua",
  advanceFairClock: "./advance-fair-clock-3.lua",
  handTenantSlots: "./hand-tenant-slots-2.lua",
  rebaseFairClock: "./rebase-fair-clock-5.lua",
});

/** Capped tasks handed slots by one release, at most. */
const HAND_OFF_BATCH = 100;

/** BullMQ's highest job priority (`PRIORITY_LIMIT` in bullmq's job.ts): 2^21 - 1. */
export const BULLMQ_PRIORITY_LIMIT = 2 ** 21 - 1;

/**
 * Units of virtual time per priority step: a task of weight w spends ceil(VIRTUAL_UNIT / w)
 * units. Integers keep every tag exact (doubles are exact up to 2^53, so for 2^33 weight-1 tasks).
 */
export const VIRTUAL_UNIT = 2 ** 20;

/** The clock is rebased once its virtual time is this many priorities past its base (half of BullMQ's range). */
const DEFAULT_REBASE_AT = 2 ** 20;

/** Options for {@link FairShare}. Durations in ms. */
export interface FairShareOptions {
  redis: Redis | Cluster;
  /** The queue shard's prefix: the order's clock, waiting and capped tasks. @defaultValue `agentry` */
  prefix?: string;
  /**
   * The global prefix (`AGENTRY_PREFIX`): tenant settings and every shard's running slots, so
   * `maxRunning` holds across shards. @defaultValue `prefix` (one shard)
   */
  globalPrefix?: string;
  /** @defaultValue `tasks` */
  queueName?: string;
  /**
   * A running attempt's slot lives this long unless renewed (the worker renews it every third of
   * it), so a killed worker's slots come back after at most this long.
   * @defaultValue 30_000
   */
  slotLeaseMs?: number;
  /** A slot handed to a capped task is kept for it this long while it travels to a worker. @defaultValue 60_000 */
  reservationMs?: number;
  /** Internal. For test use only. May change without notice. */
  _internal?: { clock?: Clock; rebaseAt?: number };
}

/** A task's place in the fair order, as stamped at submit. */
export interface FairStamp {
  taskId: string;
  /** The BullMQ priority to enqueue the job with; 0 = first in first out (fair order off). */
  priority: number;
  /** The task's start tag in the queue's virtual time, in units (absolute; priorities are relative to the clock's base). */
  tag: number;
}

/** An attempt's hold on its tenant's slot: give it back to {@link FairShare.release} when the attempt ends. */
export interface TenantSlot {
  tenant: string;
  /** The slot's member in the tenant's running set. */
  member: string;
  /** The task's start tag (absolute), or `null` for a task without a fair priority. */
  tag: number | null;
}

/** What {@link FairShare.admit} decided for one attempt. */
export interface Admission {
  /** The attempt holds a slot of its tenant and may run. Otherwise it must wait (capped) without running. */
  admitted: boolean;
  slot: TenantSlot;
}

/** What {@link FairShare.release} did. */
export interface Release {
  /** Capped tasks handed a slot, oldest first: promote them out of the delayed set. */
  wake: string[];
  /** The queue clock drifted far enough from its base that {@link FairShare.rebase} should run. */
  rebaseDue: boolean;
}

/**
 * Fair share between tenants, kept in Redis and shared by every producer and worker.
 *
 * Order: start-time fair queueing through BullMQ's own job priorities. At submit each task of a
 * tenant gets a start tag `max(V, tenant's last finish)` and advances the tenant's finish by
 * `1/weight` (in units of {@link VIRTUAL_UNIT}); its BullMQ priority is that tag relative to the
 * clock's base, so a tenant's next task competes with the other tenants' next tasks instead of
 * queueing behind a flood. `V`, the queue's virtual time, advances to the tag of every task
 * whose attempt ends: it trails the tasks in service, so a tenant arriving behind a flood gets
 * tags beside the flood's running tasks and takes the next free slots.
 *
 * Caps: a tenant's running attempts hold leased slots in a sorted set; an attempt over
 * `maxRunning` is held back (the worker parks it without a slot) and gets a slot reserved for it
 * when one frees, in submit order.
 *
 * Queue shards: one instance serves one shard's queue. The order (clock, finish tags, waiting and
 * capped tasks) is the shard's, under its prefix; tenant settings and the running slots of every
 * shard are on the global prefix, so a cap counts a tenant's attempts on all shards. Admission
 * and release are therefore two scripts each, one per slot (see the `.lua` files). Keys:
 * global `<G>:fair:tenant:<t>` (settings), `<G>:fair:tenants`, `<G>:fair:queue:<queue>:running:<t>`;
 * shard `<P>:fair:tenants`, `<P>:fair:queue:<queue>:{clock,finish,capped-tenants}` and
 * `<P>:fair:queue:<queue>:{queued,capped}:<t>`. With one shard both prefixes are the same.
 */
export class FairShare {
  readonly prefix: string;
  readonly queueName: string;
  private readonly redis: Redis | Cluster;
  private readonly keys: KeySpace;
  private readonly globalKeys: KeySpace;
  private readonly clock: Clock;
  private readonly slotLeaseMs: number;
  private readonly reservationMs: number;
  private readonly rebaseAt: number;

  constructor(options: FairShareOptions) {
    this.redis = options.redis;
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
    this.keys = keySpace(this.prefix);
    this.globalKeys = keySpace(options.globalPrefix ?? this.prefix);
    this.clock = options._internal?.clock ?? systemClock;
    this.slotLeaseMs = options.slotLeaseMs ?? 30_000;
    this.reservationMs = options.reservationMs ?? 60_000;
    this.rebaseAt = options._internal?.rebaseAt ?? DEFAULT_REBASE_AT;
  }

  /** How long a slot lives without renewal. */
  get leaseMs(): number {
    return this.slotLeaseMs;
  }

  /**
   * Stamps new tasks of one tenant, in submit order, and records them as waiting. With `fair:
   * false` every priority is 0 (BullMQ's first in first out) and no virtual time is spent.
   */
  async stamp(
    tenant: string,
    taskIds: readonly string[],
    options: { fair: boolean },
  ): Promise<{ base: number; stamps: FairStamp[] }> {
    checkTenant(tenant);
    if (taskIds.length === 0) return { base: 0, stamps: [] };
    const weight = options.fair ? ((await this.redis.hget(this.settingsKey(tenant), "weight")) ?? "1") : "1";
    const reply = await scripts.stampFairTags(
      this.redis,
      [
        this.queueKey("clock"),
        this.queueKey("finish"),
        this.tenantKey("queued", tenant),
        this.keys.key("fair", "tenants"),
      ],
      [tenant, options.fair ? "1" : "0", BULLMQ_PRIORITY_LIMIT, VIRTUAL_UNIT, Number(weight), ...taskIds],
    );
    const stamps = taskIds.map((taskId, i) => ({
      taskId,
      priority: Number(reply[1 + 2 * i]),
      tag: Number(reply[2 + 2 * i]),
    }));
    return { base: Number(reply[0]), stamps };
  }

  /** The BullMQ priority of a start tag against a clock base: `1 + floor((tag - base) / VIRTUAL_UNIT)`, within BullMQ's range. */
  static priorityOf(tag: number, base: number): number {
    return Math.min(BULLMQ_PRIORITY_LIMIT, Math.max(1, Math.floor((tag - base) / VIRTUAL_UNIT) + 1));
  }

  /** The queue clock's base now, in units (priorities are relative to it). */
  async base(): Promise<number> {
    return Number((await this.redis.hget(this.queueKey("clock"), "base")) ?? 0);
  }

  /**
   * Admits one attempt of a task a worker has taken (see {@link Admission}). `attempt` identifies
   * the attempt (its job lock token), so a stale attempt frees only its own slot.
   */
  async admit(task: {
    taskId: string;
    tenant: string;
    attempt: string;
    priority: number;
  }): Promise<Admission> {
    const member = `${task.taskId}@${task.attempt}`;
    const admitted = await scripts.admitTenantSlot(
      this.redis,
      [this.settingsKey(task.tenant), this.tenantKey("running", task.tenant)],
      [task.taskId, member, this.clock.now(), this.slotLeaseMs],
    );
    // The slot is taken: if recording the admission on the shard fails, it is given back.
    const tag = await scripts
      .trackTenantTask(
        this.redis,
        [
          this.queueKey("clock"),
          this.tenantKey("capped", task.tenant),
          this.tenantKey("queued", task.tenant),
          this.queueKey("capped-tenants"),
        ],
        [task.taskId, admitted === 1 ? 1 : 0, task.priority, task.tenant, VIRTUAL_UNIT],
      )
      .catch(async (err: unknown) => {
        if (admitted === 1)
          await this.redis.zrem(this.tenantKey("running", task.tenant), member).catch(() => undefined);
        throw err;
      });
    return {
      admitted: admitted === 1,
      slot: { tenant: task.tenant, member, tag: tag === "" ? null : Number(tag) },
    };
  }

  /**
   * Ends an attempt's hold on its slot (or none, without `slot`), moves the virtual time up to the
   * ended task's tag, and hands the tenant's free slots to its capped tasks.
   */
  async release(tenant: string, slot?: { member: string; tag: number | null }): Promise<Release> {
    const [rebaseDue, ...candidates] = await scripts.advanceFairClock(
      this.redis,
      [this.queueKey("clock"), this.tenantKey("capped", tenant), this.queueKey("capped-tenants")],
      [
        slot?.tag === null || slot?.tag === undefined ? "" : String(slot.tag),
        this.rebaseAt,
        VIRTUAL_UNIT,
        tenant,
        HAND_OFF_BATCH,
      ],
    );
    const wake = await scripts.handTenantSlots(
      this.redis,
      [this.settingsKey(tenant), this.tenantKey("running", tenant)],
      [slot?.member ?? "", this.clock.now(), this.reservationMs, ...candidates],
    );
    if (wake.length > 0) {
      await this.redis.zrem(this.tenantKey("capped", tenant), ...wake);
      if ((await this.redis.exists(this.tenantKey("capped", tenant))) === 0)
        await this.redis.srem(this.queueKey("capped-tenants"), tenant);
    }
    return { wake, rebaseDue: Number(rebaseDue) === 1 };
  }

  /** Extends the leases of slots still held (a slot already reaped is not brought back). */
  async renew(slots: readonly Pick<TenantSlot, "tenant" | "member">[]): Promise<void> {
    if (slots.length === 0) return;
    const expiry = this.clock.now() + this.slotLeaseMs;
    const pipeline = this.redis.pipeline();
    for (const s of slots) pipeline.zadd(this.tenantKey("running", s.tenant), "XX", "GT", expiry, s.member);
    await pipeline.exec();
  }

  /**
   * Forgets a task that will not run (cancelled while queued or parked, or never enqueued): it
   * stops counting as waiting, leaves the capped set, and a slot reserved for it is handed on.
   * Returns the task ids to promote.
   */
  async forget(tenant: string, taskId: string): Promise<string[]> {
    await this.redis
      .multi()
      .zrem(this.tenantKey("queued", tenant), taskId)
      .zrem(this.tenantKey("capped", tenant), taskId)
      .exec();
    return (await this.release(tenant, { member: taskId, tag: null })).wake;
  }

  /** Tenants with tasks held back by their cap. */
  async cappedTenants(): Promise<string[]> {
    return this.redis.smembers(this.queueKey("capped-tenants"));
  }

  /**
   * Drops waiting entries whose job is gone (removed outside Agentry) or finished without any
   * attempt being admitted (failed by BullMQ itself, or a duplicate submit's stamp), looking at
   * the tenant's `sample` oldest. Returns how many were dropped.
   */
  async pruneWaiting(tenant: string, sample = 50): Promise<number> {
    const ids = await this.redis.zrange(this.tenantKey("queued", tenant), 0, String(sample - 1));
    if (ids.length === 0) return 0;
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hmget(this.keys.key(this.queueName, id), "timestamp", "finishedOn");
    const replies = (await pipeline.exec()) ?? [];
    const stale = ids.filter((_, i) => {
      const [err, fields] = replies[i] ?? [null, null];
      if (err || !Array.isArray(fields)) return false;
      const [created, finished] = fields as (string | null)[];
      return created === null || finished !== null;
    });
    if (stale.length > 0) await this.redis.zrem(this.tenantKey("queued", tenant), ...stale);
    return stale.length;
  }

  /**
   * Rebases the queue clock when it is due (see rebase-fair-clock-5.lua): every priority held by
   * a job moves down by the same amount. Returns that amount in priorities (0 when nothing was due).
   */
  async rebase(): Promise<number> {
    const q = (name: string) => this.keys.key(this.queueName, name);
    return Number(
      await scripts.rebaseFairClock(
        this.redis,
        [this.queueKey("clock"), q("prioritized"), q("delayed"), q("wait"), q("active")],
        [this.rebaseAt, q(""), VIRTUAL_UNIT],
      ),
    );
  }

  /** A tenant's settings (defaults when none were set). */
  async settings(tenant: string): Promise<TenantSettings> {
    checkTenant(tenant);
    return parseSettings(await this.redis.hgetall(this.settingsKey(tenant)));
  }

  /**
   * Changes a tenant's settings; fields left out keep their values. Throws `INVALID_INPUT` for a
   * bad tenant id, a `maxRunning` that is not a whole number from 1 up (or `null`: no cap), or a
   * weight out of range. Tasks held back by a lower cap are not woken here: call
   * {@link FairShare.release} (the CLI and every worker's reconcile do).
   */
  async setSettings(tenant: string, patch: TenantSettingsPatch): Promise<TenantSettings> {
    checkTenant(tenant);
    checkTenantSettingsPatch(patch);
    const key = this.settingsKey(tenant);
    const tx = this.redis.multi();
    if (patch.maxRunning === null) tx.hdel(key, "maxRunning");
    else if (patch.maxRunning !== undefined) tx.hset(key, "maxRunning", patch.maxRunning);
    if (patch.weight !== undefined) tx.hset(key, "weight", String(patch.weight));
    tx.sadd(this.globalKeys.key("fair", "tenants"), tenant);
    await tx.exec();
    return this.settings(tenant);
  }

  /** Every tenant that submitted a task to this shard or has settings, sorted. */
  async tenants(): Promise<string[]> {
    const [global, shard] = await Promise.all([
      this.redis.smembers(this.globalKeys.key("fair", "tenants")),
      this.redis.smembers(this.keys.key("fair", "tenants")),
    ]);
    return [...new Set([...global, ...shard])].sort();
  }

  /** Settings, running and waiting counts of the given tenants (every known tenant by default), in one round trip. */
  async load(tenants?: readonly string[]): Promise<TenantLoad[]> {
    const names = tenants ?? (await this.tenants());
    for (const t of names) checkTenant(t);
    if (names.length === 0) return [];
    const now = this.clock.now();
    // Two pipelines: settings and slots are on the global slot, waiting tasks on the shard's.
    const global = this.redis.pipeline();
    const shard = this.redis.pipeline();
    for (const t of names) {
      global.hgetall(this.settingsKey(t));
      global.zcount(this.tenantKey("running", t), `(${now}`, "+inf");
      shard.zcard(this.tenantKey("queued", t));
    }
    const [globalReplies, shardReplies] = await Promise.all([global.exec(), shard.exec()]);
    return names.map((tenant, i) => {
      const at = (replies: typeof globalReplies, k: number) => {
        const [err, value] = replies?.[k] ?? [new Error("no reply"), null];
        if (err)
          throw new AgentryError("REDIS_UNAVAILABLE", `Reading tenant ${tenant} failed: ${err.message}`, {
            cause: err,
          });
        return value;
      };
      return {
        tenant,
        ...parseSettings(at(globalReplies, 2 * i) as Record<string, string>),
        running: Number(at(globalReplies, 2 * i + 1)),
        waiting: Number(at(shardReplies, i)),
      };
    });
  }

  private settingsKey(tenant: string): string {
    return this.globalKeys.key("fair", "tenant", tenant);
  }

  private queueKey(name: string): string {
    return this.keys.key("fair", "queue", this.queueName, name);
  }

  private tenantKey(kind: "queued" | "running" | "capped", tenant: string): string {
    return (kind === "running" ? this.globalKeys : this.keys).key(
      "fair",
      "queue",
      this.queueName,
      kind,
      tenant,
    );
  }
}

function parseSettings(hash: Record<string, string>): TenantSettings {
  const max = hash["maxRunning"] === undefined ? null : Number(hash["maxRunning"]);
  const weight = hash["weight"] === undefined ? DEFAULT_TENANT_WEIGHT : Number(hash["weight"]);
  return { maxRunning: max, weight };
}
