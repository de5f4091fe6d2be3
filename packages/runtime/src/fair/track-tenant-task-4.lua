--[[
  Records on the task's queue shard what admit-tenant-slot-2.lua decided for one attempt.
  Admitted: the task leaves the queued and capped sets. Held back: it joins the tenant's capped
  set (scored by its start tag, so hand-offs follow submit order) and the tenant the shard's set
  of capped tenants.

  The task's start tag is its score in the queued set (its first attempt), else derived from its
  BullMQ priority and the clock's base (a task re-entering after a park), else the virtual time
  (no priority: first in first out).

  KEYS[1] queue clock (hash: vtime, base)   KEYS[2] the tenant's capped set (zset)
  KEYS[3] the tenant's queued set (zset)    KEYS[4] capped tenants (set)

  ARGV[1] task id  ARGV[2] 1 admitted, 0 held back  ARGV[3] the job's BullMQ priority (0 = first
  in first out)  ARGV[4] tenant  ARGV[5] units of virtual time per priority

  Returns the start tag as decimal text ("" without a priority).
]]
local function text(n) return string.format('%d', n) end

local taskId = ARGV[1]
local priority = tonumber(ARGV[3]) or 0
local tag = tonumber(redis.call('ZSCORE', KEYS[3], taskId))
if tag == nil and priority > 0 then
  local clock = redis.call('HMGET', KEYS[1], 'vtime', 'base')
  tag = (tonumber(clock[2]) or 0) + (priority - 1) * tonumber(ARGV[5])
end
local tagText = ''
if priority > 0 and tag ~= nil then tagText = text(tag) end

if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[3], taskId)
  redis.call('ZREM', KEYS[2], taskId)
  return tagText
end
if tag == nil then tag = tonumber(redis.call('HGET', KEYS[1], 'vtime')) or 0 end
redis.call('ZADD', KEYS[2], 'NX', text(tag), taskId)
redis.call('SADD', KEYS[4], ARGV[4])
return tagText
