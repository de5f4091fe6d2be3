-- Removes a task from its session's order without touching the lease.
-- KEYS[1] order  KEYS[2] sequence counter  ARGV[1] taskId
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
