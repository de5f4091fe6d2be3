-- Takes tokens from one tenant's submit bucket (a token bucket refilled continuously), or says
-- how long until there are enough. Time is Redis's own (TIME), so every producer replica shares
-- one bucket and one clock. A full bucket is the same as no key: the key expires once it would
-- have refilled, so idle tenants leave nothing behind.
-- KEYS[1] bucket (hash: tokens, at = ms of the last take)
-- ARGV[1] refill rate, tokens per second (> 0); ARGV[2] capacity (burst, >= 1); ARGV[3] tokens to take
-- Returns {taken (1|0), ms until enough tokens (0 when taken), whole tokens left}
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local state = redis.call("HMGET", KEYS[1], "tokens", "at")
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = tokens + (now - at) * rate / 1000
end
-- A lowered burst applies at once.
if tokens > burst then
  tokens = burst
end

if tokens < cost then
  -- Nothing is written: a flood of refused submissions costs one read each.
  return {0, math.ceil((cost - tokens) * 1000 / rate), math.floor(tokens)}
end
tokens = tokens - cost
redis.call("HSET", KEYS[1], "tokens", tostring(tokens), "at", tostring(now))
redis.call("PEXPIRE", KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {1, 0, math.floor(tokens)}
