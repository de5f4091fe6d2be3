-- Extends a lease if the caller still owns it.
-- KEYS[1] lease  ARGV[1] token  ARGV[2] ttl ms
-- Returns the new expiresAt, or 0 when the lease is lost.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
