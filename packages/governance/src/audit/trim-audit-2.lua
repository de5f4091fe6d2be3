-- Drops an audit chain's entries up to an archived point (written to an archive file and
-- anchored first): XTRIM MINID past it, and the head records the point, {baseSeq, baseHash},
-- that the entries left in Redis link to. Only forward, and only to the entry the caller
-- archived: the entry at that seq must still carry that hash.
-- KEYS[1] audit stream, KEYS[2] head hash {seq, hash, baseSeq, baseHash}
-- ARGV[1] seq to trim through, ARGV[2] that entry's hash
-- Returns {1, entries trimmed} or {0, reason}: beyond-head | already-trimmed | missing | mismatch
local seq = tonumber(ARGV[1])
local head = redis.call("HMGET", KEYS[2], "seq", "baseSeq")
local headSeq = tonumber(head[1] or "0")
local baseSeq = tonumber(head[2] or "0")
if seq > headSeq then
  return {0, "beyond-head"}
end
if seq <= baseSeq then
  return {0, "already-trimmed"}
end
local at = redis.call("XRANGE", KEYS[1], seq .. "-0", seq .. "-0")
if #at == 0 then
  return {0, "missing"}
end
-- Its hash: field `h`, or, on an entry stored whole (written before `h`), the JSON's `hash`.
local raw, hash
local fields = at[1][2]
for i = 1, #fields, 2 do
  if fields[i] == "e" then
    raw = fields[i + 1]
  elseif fields[i] == "h" then
    hash = fields[i + 1]
  end
end
if hash == nil then
  local ok, entry = pcall(cjson.decode, raw or "")
  if ok and type(entry) == "table" then
    hash = entry.hash
  end
end
if hash ~= ARGV[2] then
  return {0, "mismatch"}
end
local trimmed = redis.call("XTRIM", KEYS[1], "MINID", (seq + 1) .. "-0")
redis.call("HSET", KEYS[2], "baseSeq", seq, "baseHash", ARGV[2])
return {1, trimmed}
