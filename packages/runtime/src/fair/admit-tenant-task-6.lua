--[[
  Admits one attempt of a task that a worker has just taken, or holds it back because its tenant
  is at its maxRunning.

  Slots are the members of the tenant's running set, each scored by its lease expiry (ms);
  expired ones (a dead worker's) are dropped first. A slot reserved for this task by a hand-off
  (member = task id) becomes the attempt's. Admitted: the attempt holds a slot (member ARGV[2])
  and the task leaves the queued set. Held back: the task joins the tenant's capped set (scored
  by its start tag, so hand-offs follow submit order) and the tenant the set of capped tenants.

  The task's start tag is its score in the queued set (its first attempt), else derived from its
  BullMQ priority and the clock's base (a task re-entering after a park), else the virtual time
  (no priority: first in first out).

  KEYS[1] tenant settings (hash: maxRunning)   KEYS[2] queue clock (hash: vtime, base)
  KEYS[3] the tenant's running set (zset)      KEYS[4] the tenant's capped set (zset)
  KEYS[5] the tenant's queued set (zset)       KEYS[6] capped tenants (set)

  ARGV[1] task id  ARGV[2] attempt member  ARGV[3] now (ms)  ARGV[4] slot lease (ms)
  ARGV[5] the job's BullMQ priority (0 = first in first out)  ARGV[6] tenant
  ARGV[7] units of virtual time per priority

  Returns {1 admitted | 0 held back, start tag as decimal text ("" without a priority)}.
]]
local function text(n) return string.format('%d', n) end

local taskId, member, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local priority = tonumber(ARGV[5]) or 0
local tag = tonumber(redis.call('ZSCORE', KEYS[5], taskId))
if tag == nil and priority > 0 then
  local clock = redis.call('HMGET', KEYS[2], 'vtime', 'base')
  tag = (tonumber(clock[2]) or 0) + (priority - 1) * tonumber(ARGV[7])
end
local tagText = ''
if priority > 0 and tag ~= nil then tagText = text(tag) end

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local max = tonumber(redis.call('HGET', KEYS[1], 'maxRunning'))
local reserved = redis.call('ZREM', KEYS[3], taskId) == 1
if reserved or max == nil or redis.call('ZCARD', KEYS[3]) < max then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), member)
  redis.call('ZREM', KEYS[5], taskId)
  redis.call('ZREM', KEYS[4], taskId)
  return {1, tagText}
end
if tag == nil then tag = tonumber(redis.call('HGET', KEYS[2], 'vtime')) or 0 end
redis.call('ZADD', KEYS[4], 'NX', text(tag), taskId)
redis.call('SADD', KEYS[6], ARGV[6])
return {0, tagText}
