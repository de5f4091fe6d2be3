-- Cancels a pending approval because its task was cancelled: no decision counts any more, and
-- nothing is left pending. The record is kept for ARGV[3] ms (like a consumed approval).
-- KEYS[1] record hash, KEYS[2] pending zset, KEYS[3] all-approvals zset
-- ARGV[1] id, ARGV[2] now (ms), ARGV[3] retention (ms), ARGV[4] reason
-- Returns 1 when cancelled now, 0 when unknown or no longer pending.
if redis.call("HGET", KEYS[1], "status") ~= "pending" then
  return 0
end
redis.call("HSET", KEYS[1], "status", "cancelled", "resolvedAt", ARGV[2], "acknowledgedAt", ARGV[2], "cancelReason", ARGV[4])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return 1
