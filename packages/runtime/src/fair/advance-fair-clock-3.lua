--[[
  The queue shard's half of ending an attempt: moves the shard's virtual time up to the start
  tag of the task whose attempt ended (ARGV[1]), never back, and names the tenant's oldest capped
  tasks, the candidates for the slots the global half (hand-tenant-slots-2.lua) frees.

  The virtual time trails the tasks in service, so a tenant that starts submitting behind a
  flood gets tags beside the flood's tasks still running, not behind its next ones.

  KEYS[1] queue clock (hash: vtime, base)  KEYS[2] the tenant's capped set (zset)
  KEYS[3] capped tenants (set)

  ARGV[1] start tag of the task whose attempt ended, or ""  ARGV[2] rebase threshold (priorities)
  ARGV[3] units of virtual time per priority  ARGV[4] tenant  ARGV[5] most candidates named

  Returns {1 when the clock is due for a rebase else 0, capped task ids oldest first...}.
]]
local rebase = 0
local tag = tonumber(ARGV[1])
if tag ~= nil then
  local clock = redis.call('HMGET', KEYS[1], 'vtime', 'base')
  local vtime = tonumber(clock[1]) or 0
  if tag > vtime then
    vtime = tag
    redis.call('HSET', KEYS[1], 'vtime', string.format('%d', vtime))
  end
  if vtime - (tonumber(clock[2]) or 0) >= tonumber(ARGV[2]) * tonumber(ARGV[3]) then rebase = 1 end
end
local out = {rebase}
local capped = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[5]) - 1)
if #capped == 0 then redis.call('SREM', KEYS[3], ARGV[4]) end
for _, id in ipairs(capped) do out[#out + 1] = id end
return out
