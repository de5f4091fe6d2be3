--[[
  Takes a slot of the tenant's maxRunning for one attempt a worker has just taken, or refuses.
  Runs on the global slot, where every queue shard's attempts of the tenant hold their slots, so
  the cap holds across shards.

  Slots are the members of the tenant's running set, each scored by its lease expiry (ms);
  expired ones (a dead worker's) are dropped first. A slot reserved for this task by a hand-off
  (member = task id) becomes the attempt's.

  KEYS[1] tenant settings (hash: maxRunning)   KEYS[2] the tenant's running set (zset)

  ARGV[1] task id  ARGV[2] attempt member  ARGV[3] now (ms)  ARGV[4] slot lease (ms)

  Returns 1 admitted (the attempt holds a slot), 0 held back.
]]
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local max = tonumber(redis.call('HGET', KEYS[1], 'maxRunning'))
local reserved = redis.call('ZREM', KEYS[2], ARGV[1]) == 1
if reserved or max == nil or redis.call('ZCARD', KEYS[2]) < max then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[2])
  return 1
end
return 0
