-- Fetches the vectors of many records in one round trip, for brute-force search.
-- KEYS  record hashes  ARGV[1] embedder tag: a record written by another embedder yields nil.
-- Returns one entry per key: the Float32 blob, or nil (deleted, or another embedder).
local out = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, 'embtag', 'vec')
  if fields[1] == ARGV[1] then
    out[i] = fields[2]
  else
    out[i] = false
  end
end
return out
