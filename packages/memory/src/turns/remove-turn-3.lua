-- Removes a task from its session's order (cancelled, or dead before it ran). With ARGV[2] = "1"
-- the caller knows the task is not running (it was parked, or is dead): if it holds the turn,
-- the turn ends too, so the next task does not wait for a lease nobody will release. Otherwise a
-- running holder keeps its lease until it releases it.
-- KEYS[1] order  KEYS[2] sequence counter  KEYS[3] lease  ARGV[1] taskId  ARGV[2] "1" to end its turn
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == '1' and redis.call('HGET', KEYS[3], 'taskId') == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
