-- Compare-and-append: adds a batch of entries only if the chain head is still the one the
-- writer hashed against, so every worker's entries form one total order. (Lua in Redis has
-- no HMAC, so the writer computes the links; this script guards the order, the fence and
-- deduplication, all in the same atomic step as the XADD.)
-- KEYS[1] audit stream (its head hash {seq, hash} is "<stream>:head", in the same slot),
-- KEYS[2] fence key (the stream when unfenced), KEYS[3..] once keys of the batch
-- ARGV[1] fence token ("" = unfenced), ARGV[2] prevHash the writer used, ARGV[3] seq of the
-- first entry, ARGV[4] the genesis hash when the writer starts the chain ("" otherwise: a head
-- that is missing then did move), ARGV[5] once TTL (seconds),
-- then per entry: its hash, its canonical JSON without seq, prevHash and hash (stored as `e`, the
-- hash as `h`: the seq is the stream id's, the prevHash the previous entry's `h`), the KEYS index
-- of its once key (0 = none)
-- Returns {1, lastStreamId} when appended, {0, headSeq, headHash} when the head moved ("" for
-- the genesis hash),
-- {2, i, "seq hash", ...} when entries (0-based i) were already written under their once key
-- (nothing appended), {3} when the fence no longer holds its token (nothing appended).
local headKey = KEYS[1] .. ":head"
if ARGV[1] ~= "" and redis.call("GET", KEYS[2]) ~= ARGV[1] then
  return {3}
end
local head = redis.call("HMGET", headKey, "seq", "hash")
local seq = tonumber(head[1] or "0")
local hash = head[2] or ARGV[4]
local first = tonumber(ARGV[3])
if hash ~= ARGV[2] or seq + 1 ~= first then
  return {0, seq, head[2] or ""}
end
local n = (#ARGV - 5) / 3
local dups = {2}
for i = 0, n - 1 do
  local k = tonumber(ARGV[8 + 3 * i])
  if k > 0 then
    local seen = redis.call("GET", KEYS[k])
    if seen then
      dups[#dups + 1] = i
      dups[#dups + 1] = seen
    end
  end
end
if #dups > 1 then
  return dups
end
local id
for i = 0, n - 1 do
  local entryHash = ARGV[6 + 3 * i]
  id = redis.call("XADD", KEYS[1], (first + i) .. "-0", "e", ARGV[7 + 3 * i], "h", entryHash)
  local k = tonumber(ARGV[8 + 3 * i])
  if k > 0 then
    redis.call("SET", KEYS[k], (first + i) .. " " .. entryHash, "EX", ARGV[5])
  end
end
redis.call("HSET", headKey, "seq", first + n - 1, "hash", ARGV[6 + 3 * (n - 1)])
return {1, id}
