-- Registers a task at the end of its session's order, once.
-- KEYS[1] order (zset, score = submit sequence)  KEYS[2] sequence counter
-- ARGV[1] taskId
-- Returns 1 when added, 0 when already there.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], seq, ARGV[1])
return 1
