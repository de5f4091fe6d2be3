--[[
  Admits one attempt of a task that a worker has just taken, or holds it back because its tenant
  is at its maxRunning. Also advances the queue's virtual time to the start tag of the task
  (a fair-ordered job's priority says where its tag lies relative to the clock's base).

  Slots are the members of the tenant's running set, each scored by its lease expiry (ms);
  expired ones (a dead worker's) are dropped first. A slot reserved for this task by a hand-off
  (member = task id) becomes the attempt's. Admitted: the attempt holds a slot (member ARGV[2])
  and the task leaves the queued set. Held back: the task joins the tenant's capped set (scored
  by its start tag, so hand-offs follow submit order) and the tenant the set of capped tenants.

  KEYS[1] tenant settings (hash: maxRunning)   KEYS[2] queue clock (hash: vtime, base)
  KEYS[3] the tenant's running set (zset)      KEYS[4] the tenant's capped set (zset)
  KEYS[5] the tenant's queued set (zset)       KEYS[6] capped tenants (set)

  ARGV[1] task id  ARGV[2] attempt member  ARGV[3] now (ms)  ARGV[4] slot lease (ms)
  ARGV[5] the job's BullMQ priority (0 = first in first out)  ARGV[6] rebase threshold (priorities)
  ARGV[7] tenant  ARGV[8] units of virtual time per priority

  Returns {1 admitted | 0 held back, 1 when the clock is due for a rebase else 0, running slots}.
]]
local function text(n) return string.format('%d', n) end

local taskId, member, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local priority = tonumber(ARGV[5]) or 0
local clock = redis.call('HMGET', KEYS[2], 'vtime', 'base')
local vtime = tonumber(clock[1]) or 0
local base = tonumber(clock[2]) or 0
local tag = vtime
if priority > 0 then
  tag = base + (priority - 1) * tonumber(ARGV[8])
  if tag > vtime then
    vtime = tag
    redis.call('HSET', KEYS[2], 'vtime', text(vtime))
  end
end
local rebase = 0
if vtime - base >= tonumber(ARGV[6]) * tonumber(ARGV[8]) then rebase = 1 end

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local expiry = now + tonumber(ARGV[4])
local max = tonumber(redis.call('HGET', KEYS[1], 'maxRunning'))
local reserved = redis.call('ZREM', KEYS[3], taskId) == 1
if reserved or max == nil or redis.call('ZCARD', KEYS[3]) < max then
  redis.call('ZADD', KEYS[3], expiry, member)
  redis.call('ZREM', KEYS[5], taskId)
  redis.call('ZREM', KEYS[4], taskId)
  return {1, rebase, redis.call('ZCARD', KEYS[3])}
end
local queuedTag = redis.call('ZSCORE', KEYS[5], taskId)
redis.call('ZADD', KEYS[4], 'NX', queuedTag or text(tag), taskId)
redis.call('SADD', KEYS[6], ARGV[7])
return {0, rebase, redis.call('ZCARD', KEYS[3])}
