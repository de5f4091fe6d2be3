-- Ends a task's turn. The lease is dropped only by its owner; the task leaves the order when
-- the caller owns the lease or nobody does (its lease expired and no one re-took it).
-- A live lease of another owner leaves everything as it is. With a fence, nothing changes
-- unless the fence key still holds its token (the releasing attempt still owns its task).
-- KEYS[1] order  KEYS[2] lease  KEYS[3] sequence counter  KEYS[4] fence key
-- ARGV[1] taskId  ARGV[2] token  ARGV[3] fence token ("" = not fenced)
-- Returns 1 when the turn ended, 0 when another owner holds it, -1 when the fence did not hold.
if ARGV[3] ~= "" and redis.call('GET', KEYS[4]) ~= ARGV[3] then
  return -1
end
local token = redis.call('HGET', KEYS[2], 'token')
if token == ARGV[2] then
  redis.call('DEL', KEYS[2])
elseif token then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
end
return 1
