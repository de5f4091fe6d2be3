--[[
  Moves the queue clock's base up to its virtual time once the two are ARGV[1] priorities apart,
  so BullMQ priorities (1 + floor((tag - base) / unit), at most 2^21 - 1) keep room for new
  tags. Every job that holds a priority is moved down by the same amount in one step, keeping
  the order: the prioritized set's scores (priority * 2^32 + insertion counter, counter kept)
  and the `priority` field of jobs in the prioritized set, the delayed set, the wait list and the
  active list (the last three re-enter the prioritized set with the field they hold).
  Priorities never go below 1. Runs in one call, so its cost grows with the number of
  unfinished jobs; at the default threshold (2^20) it runs about once per million weight-1
  task starts.

  KEYS[1] queue clock (hash: vtime, base)  KEYS[2] prioritized (zset)  KEYS[3] delayed (zset)
  KEYS[4] wait (list)  KEYS[5] active (list)

  ARGV[1] threshold (priorities)  ARGV[2] job key prefix (`<prefix>:<queue>:`)
  ARGV[3] units of virtual time per priority

  Returns the number of priorities the base moved (0 when no rebase was due).
]]
local clock = redis.call('HMGET', KEYS[1], 'vtime', 'base')
local vtime = tonumber(clock[1]) or 0
local base = tonumber(clock[2]) or 0
local unit = tonumber(ARGV[3])
local delta = math.floor((vtime - base) / unit)
if delta < tonumber(ARGV[1]) or delta < 1 then return 0 end
local shift = 4294967296
local function lowered(priority)
  local p = priority - delta
  if p < 1 then p = 1 end
  return p
end

local scored = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #scored, 2 do
  local id = scored[i]
  local score = tonumber(scored[i + 1])
  local priority = math.floor(score / shift)
  local counter = score - priority * shift
  local p = lowered(priority)
  redis.call('ZADD', KEYS[2], string.format('%.17g', p * shift + counter), id)
  redis.call('HSET', ARGV[2] .. id, 'priority', p)
end
local function lowerField(ids)
  for _, id in ipairs(ids) do
    local key = ARGV[2] .. id
    local priority = tonumber(redis.call('HGET', key, 'priority')) or 0
    if priority > 0 then redis.call('HSET', key, 'priority', lowered(priority)) end
  end
end
lowerField(redis.call('ZRANGE', KEYS[3], 0, -1))
lowerField(redis.call('LRANGE', KEYS[4], 0, -1))
lowerField(redis.call('LRANGE', KEYS[5], 0, -1))
redis.call('HSET', KEYS[1], 'base', string.format('%d', base + delta * unit))
return delta
