-- Creates an approval record unless it exists (idempotent on the id).
-- KEYS[1] record hash, KEYS[2] pending zset (score expiresAt), KEYS[3] all zset (score createdAt)
-- ARGV[1] id, ARGV[2] expiresAt, ARGV[3] createdAt, ARGV[4..] field/value pairs
-- Returns {1} when created, {0, status} when it already existed.
if redis.call("EXISTS", KEYS[1]) == 1 then
  return {0, redis.call("HGET", KEYS[1], "status")}
end
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[1])
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
return {1}
