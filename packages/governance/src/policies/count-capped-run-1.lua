-- Counts one run of a tool in a fixed window, unless the cap is already reached.
-- KEYS[1] counter key (one per scope, tool and window)
-- ARGV[1] max runs in the window, ARGV[2] window length in ms
-- Returns {allowed (1|0), count after this call}
local count = tonumber(redis.call("GET", KEYS[1]) or "0")
local max = tonumber(ARGV[1])
if count >= max then
  return {0, count}
end
count = redis.call("INCR", KEYS[1])
if count == 1 then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return {1, count}
