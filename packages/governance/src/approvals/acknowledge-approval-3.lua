-- Marks a resolved approval as consumed by its resumed task, so reconcile stops reporting it.
-- A consumed approval is kept for ARGV[3] ms more (its record expires then), and index entries
-- created before now - ARGV[3] are dropped, so approvals do not accumulate forever.
-- KEYS[1] record hash, KEYS[2] resolved zset, KEYS[3] all-approvals zset (by creation time)
-- ARGV[1] id, ARGV[2] now (ms), ARGV[3] retention (ms)
-- Returns 1 when acknowledged now, 0 when unknown, still pending or already acknowledged.
local status = redis.call("HGET", KEYS[1], "status")
if not status or status == "pending" then
  return 0
end
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call("HSET", KEYS[1], "acknowledgedAt", ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", "(" .. (tonumber(ARGV[2]) - tonumber(ARGV[3])))
return 1
