-- Compare-and-append: adds an entry only if the chain head is still the one the writer
-- hashed against, so every worker's entries form one total order. (Lua in Redis has no
-- SHA-256, so the writer computes the hash; this script only guards the order.)
-- KEYS[1] audit stream, KEYS[2] head hash {seq, hash}
-- ARGV[1] prevHash the writer used, ARGV[2] the entry's seq, ARGV[3] the entry's hash,
-- ARGV[4] the entry (canonical JSON), ARGV[5] genesis hash
-- Returns {1, streamId} when appended, {0, headSeq, headHash} when the head moved.
local head = redis.call("HMGET", KEYS[2], "seq", "hash")
local seq = tonumber(head[1] or "0")
local hash = head[2] or ARGV[5]
if hash ~= ARGV[1] or seq + 1 ~= tonumber(ARGV[2]) then
  return {0, seq, hash}
end
local id = redis.call("XADD", KEYS[1], ARGV[2] .. "-0", "e", ARGV[4])
redis.call("HSET", KEYS[2], "seq", ARGV[2], "hash", ARGV[3])
return {1, id}
