-- Marks a pending approval expired when its time has passed, with the same bookkeeping
-- and event as a decision.
-- KEYS[1] record hash, KEYS[2] pending zset, KEYS[3] resolved zset
-- ARGV[1] id, ARGV[2] now (ms), ARGV[3] events channel
-- Returns {"unknown"} | {"not-pending", status} | {"not-due", expiresAt} | {"expired"}
if redis.call("EXISTS", KEYS[1]) == 0 then
  redis.call("ZREM", KEYS[2], ARGV[1])
  return {"unknown"}
end
local f = redis.call("HMGET", KEYS[1], "status", "expiresAt", "taskId", "jobId")
if f[1] ~= "pending" then
  redis.call("ZREM", KEYS[2], ARGV[1])
  return {"not-pending", f[1]}
end
if tonumber(ARGV[2]) < tonumber(f[2]) then
  return {"not-due", f[2]}
end
redis.call("HSET", KEYS[1], "status", "expired", "resolvedAt", ARGV[2])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZADD", KEYS[3], ARGV[2], ARGV[1])
local event = {approvalId = ARGV[1], taskId = f[3], status = "expired"}
if f[4] and f[4] ~= "" then event.jobId = f[4] end
redis.call("PUBLISH", ARGV[3], cjson.encode(event))
return {"expired"}
