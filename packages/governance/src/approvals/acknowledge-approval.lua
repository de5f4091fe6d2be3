-- Marks a resolved approval as consumed by its resumed task, so reconcile stops reporting it.
-- KEYS[1] record hash, KEYS[2] resolved zset
-- ARGV[1] id, ARGV[2] now (ms)
-- Returns 1 when acknowledged now, 0 when unknown, still pending or already acknowledged.
local status = redis.call("HGET", KEYS[1], "status")
if not status or status == "pending" then
  return 0
end
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call("HSET", KEYS[1], "acknowledgedAt", ARGV[2])
return 1
