-- Claims a tool call before its handler runs, only while the attempt's fence holds: an attempt
-- that lost its job lock to another worker (or whose task has completed) runs no tool, even one
-- the journal has never seen (a call from a model response only that attempt got).
-- KEYS[1] journal entry  KEYS[2] claim marker  KEYS[3] fence key
-- ARGV[1] fence token ("" = not fenced)  ARGV[2] entry TTL ms  ARGV[3] claim TTL ms
-- Returns 1 when claimed, 0 when the call was claimed before, -1 when the fence did not hold.
if ARGV[1] ~= "" and redis.call("GET", KEYS[3]) ~= ARGV[1] then
  return -1
end
if redis.call("SET", KEYS[1], "started", "PX", ARGV[2], "NX") then
  -- While the marker lives, the claimant may still be running the tool and record its result.
  redis.call("SET", KEYS[2], "1", "PX", ARGV[3])
  return 1
end
return 0
