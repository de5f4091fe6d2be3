--[[
  Frees one attempt's slot (when ARGV[1] is not empty), drops expired slots, and hands the free
  slots of the tenant to its capped tasks in start-tag order: each gets a slot reserved under its
  task id for ARGV[3] ms, and its id is returned so the caller promotes it. A tenant without a cap
  (maxRunning removed) gets up to ARGV[5] capped tasks back, nothing reserved.

  KEYS[1] tenant settings (hash: maxRunning)  KEYS[2] the tenant's running set (zset)
  KEYS[3] the tenant's capped set (zset)      KEYS[4] capped tenants (set)

  ARGV[1] slot member to free, or ""  ARGV[2] now (ms)  ARGV[3] reservation lease (ms)
  ARGV[4] tenant  ARGV[5] most tasks handed back at once

  Returns the task ids to promote.
]]
local now = tonumber(ARGV[2])
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local max = tonumber(redis.call('HGET', KEYS[1], 'maxRunning'))
local free = tonumber(ARGV[5])
if max ~= nil then free = math.min(free, max - redis.call('ZCARD', KEYS[2])) end
local ids = {}
while free > 0 do
  local popped = redis.call('ZPOPMIN', KEYS[3])
  if #popped == 0 then break end
  if max ~= nil then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), popped[1]) end
  ids[#ids + 1] = popped[1]
  free = free - 1
end
if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('SREM', KEYS[4], ARGV[4]) end
return ids
