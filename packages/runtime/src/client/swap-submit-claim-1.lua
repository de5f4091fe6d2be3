-- Compare-and-swap of an idempotent submit's claim (`<G>:idempotency:<taskId>`, on the global
-- slot): the one place concurrent submits of one key meet when they route to different shards.
-- ARGV[1]: the value the claim must hold now ("" = no claim); ARGV[2]: its new value ("" =
-- delete it); ARGV[3]: the new value's lifetime in milliseconds.
-- Returns {1} when swapped; {0, current} when the claim held something else ({0} when none).
local current = redis.call("GET", KEYS[1])
if (current or "") ~= ARGV[1] then
  return {0, current}
end
if ARGV[2] == "" then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
end
return {1}
