-- Appends messages to a session's history, at most once per key and only while the writer's
-- fence holds, in one script: a task attempt that lost its job lock appends nothing, and a
-- retried completion never appends the same turn twice.
-- KEYS[1] history list  KEYS[2] fence key  KEYS[3] once key
-- ARGV[1] fence token ("" = not fenced)  ARGV[2] "1" when KEYS[3] is a once key
-- ARGV[3] max messages kept  ARGV[4] TTL ms  ARGV[5..] encoded messages
-- Returns 1 when appended, 0 when the once key had been used, -1 when the fence did not hold.
if ARGV[1] ~= "" and redis.call("GET", KEYS[2]) ~= ARGV[1] then
  return -1
end
if ARGV[2] == "1" then
  if redis.call("SET", KEYS[3], "1", "PX", ARGV[4], "NX") == false then
    return 0
  end
end
if #ARGV > 4 then
  redis.call("RPUSH", KEYS[1], unpack(ARGV, 5))
  redis.call("LTRIM", KEYS[1], -tonumber(ARGV[3]), -1)
end
redis.call("PEXPIRE", KEYS[1], ARGV[4])
return 1
