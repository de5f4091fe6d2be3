--[[
  The global half of ending an attempt: frees its slot (when ARGV[1] is not empty), drops expired
  slots, and hands the tenant's free slots to the candidates (capped tasks of one queue shard,
  oldest first): each gets a slot reserved under its task id for ARGV[3] ms, and is returned so
  the caller removes it from its capped set and promotes it. A candidate that already holds a
  reservation is skipped. A tenant without a cap (maxRunning removed) gets every candidate back,
  nothing reserved. Every slot is added here, after the count, so the cap holds whatever the
  shards race.

  KEYS[1] tenant settings (hash: maxRunning)  KEYS[2] the tenant's running set (zset)

  ARGV[1] slot member to free, or ""  ARGV[2] now (ms)  ARGV[3] reservation lease (ms)
  ARGV[4..] candidate task ids

  Returns the task ids handed a slot.
]]
local now = tonumber(ARGV[2])
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local max = tonumber(redis.call('HGET', KEYS[1], 'maxRunning'))
local out = {}
if max == nil then
  for i = 4, #ARGV do out[#out + 1] = ARGV[i] end
  return out
end
local free = max - redis.call('ZCARD', KEYS[2])
for i = 4, #ARGV do
  if free <= 0 then break end
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) == false then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[i])
    out[#out + 1] = ARGV[i]
    free = free - 1
  end
end
return out
