-- Compare-and-append: adds a batch of entries only if the chain head is still the one the
-- writer hashed against, so every worker's entries form one total order. (Lua in Redis has
-- no SHA-256, so the writer computes the hashes; this script only guards the order.)
-- KEYS[1] audit stream, KEYS[2] head hash {seq, hash}
-- ARGV[1] prevHash the writer used, ARGV[2] seq of the first entry, ARGV[3] genesis hash,
-- then per entry: its hash, its canonical JSON
-- Returns {1, lastStreamId} when appended, {0, headSeq, headHash} when the head moved.
local head = redis.call("HMGET", KEYS[2], "seq", "hash")
local seq = tonumber(head[1] or "0")
local hash = head[2] or ARGV[3]
local first = tonumber(ARGV[2])
if hash ~= ARGV[1] or seq + 1 ~= first then
  return {0, seq, hash}
end
local id
local n = (#ARGV - 3) / 2
for i = 0, n - 1 do
  id = redis.call("XADD", KEYS[1], (first + i) .. "-0", "e", ARGV[5 + 2 * i])
end
redis.call("HSET", KEYS[2], "seq", first + n - 1, "hash", ARGV[4 + 2 * (n - 1)])
return {1, id}
