-- Takes a session's turn for a task: only the head of the order, only when no lease is live.
-- KEYS[1] order  KEYS[2] lease (hash taskId/token, expires by PEXPIRE)
-- ARGV[1] taskId  ARGV[2] new token  ARGV[3] ttl ms
-- Returns {1, expiresAt} when taken, {0, head, holderTaskId} when not.
local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
local holder = redis.call('HGET', KEYS[2], 'taskId')
if head ~= ARGV[1] or holder then
  return {0, head or false, holder or false}
end
redis.call('HSET', KEYS[2], 'taskId', ARGV[1], 'token', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local t = redis.call('TIME')
return {1, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])}
