--[[
  Ends one attempt's hold on its tenant's slot (when ARGV[1] is not empty), drops expired slots,
  and hands the tenant's free slots to its capped tasks in start-tag order: each gets a slot
  reserved under its task id for ARGV[3] ms, and its id is returned so the caller promotes it.
  A tenant without a cap (maxRunning removed) gets up to ARGV[5] capped tasks back, nothing
  reserved.

  The queue's virtual time advances here, to the start tag of the task whose attempt ended
  (ARGV[6]), never back: it trails the tasks in service, so a tenant that starts submitting
  behind a flood gets tags beside the flood's tasks still running, not behind its next ones.

  KEYS[1] tenant settings (hash: maxRunning)  KEYS[2] the tenant's running set (zset)
  KEYS[3] the tenant's capped set (zset)      KEYS[4] capped tenants (set)
  KEYS[5] queue clock (hash: vtime, base)

  ARGV[1] slot member to free, or ""  ARGV[2] now (ms)  ARGV[3] reservation lease (ms)
  ARGV[4] tenant  ARGV[5] most tasks handed back at once
  ARGV[6] start tag of the task whose attempt ended, or ""  ARGV[7] rebase threshold (priorities)
  ARGV[8] units of virtual time per priority

  Returns {1 when the clock is due for a rebase else 0, task ids to promote...}.
]]
local now = tonumber(ARGV[2])
local rebase = 0
local tag = tonumber(ARGV[6])
if tag ~= nil then
  local clock = redis.call('HMGET', KEYS[5], 'vtime', 'base')
  local vtime = tonumber(clock[1]) or 0
  if tag > vtime then
    vtime = tag
    redis.call('HSET', KEYS[5], 'vtime', string.format('%d', vtime))
  end
  if vtime - (tonumber(clock[2]) or 0) >= tonumber(ARGV[7]) * tonumber(ARGV[8]) then rebase = 1 end
end

if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local max = tonumber(redis.call('HGET', KEYS[1], 'maxRunning'))
local free = tonumber(ARGV[5])
if max ~= nil then free = math.min(free, max - redis.call('ZCARD', KEYS[2])) end
local out = {rebase}
while free > 0 do
  local popped = redis.call('ZPOPMIN', KEYS[3])
  if #popped == 0 then break end
  if max ~= nil then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), popped[1]) end
  out[#out + 1] = popped[1]
  free = free - 1
end
if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('SREM', KEYS[4], ARGV[4]) end
return out
