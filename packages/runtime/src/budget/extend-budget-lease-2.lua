--[[
  Pushes a live reservation's lease out to now + leaseMs. A lease that has already run out
  is not revived: the reservation belongs to the reaper from then on.

  KEYS[1] reservation hash  KEYS[2] leases (zset)
  ARGV[1] id  ARGV[2] now (ms)  ARGV[3] leaseMs
  Returns the new expiry (ms), or 0 when there is no live reservation.
]]
local lease = tonumber(redis.call('HGET', KEYS[1], 'leaseExpiresAt'))
local now = tonumber(ARGV[2])
if not lease or lease <= now then return 0 end
local expiresAt = now + tonumber(ARGV[3])
local text = string.format('%d', expiresAt)
redis.call('HSET', KEYS[1], 'leaseExpiresAt', text)
redis.call('ZADD', KEYS[2], text, ARGV[1])
return expiresAt
