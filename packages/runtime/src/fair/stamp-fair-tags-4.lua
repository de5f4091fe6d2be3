--[[
  Stamps new tasks of one tenant for fair share (start-time fair queueing): each task's start
  tag is max(queue virtual time, the tenant's last finish tag); its finish tag is start +
  ceil(ARGV[4] / weight). Tags are whole units of virtual time (ARGV[4] units = one task of
  weight 1), so every comparison is exact. A tenant with nothing queued starts again at the
  virtual time, so tags it spent on cancelled or removed tasks are not held against it. The
  BullMQ priority is the start tag relative to the clock's base, 1 + floor((tag - base) /
  ARGV[4]), clamped to BullMQ's range. Every task joins the tenant's queued set (its waiting
  count), in both modes.

  The tenant's weight comes in ARGV[5]: tenant settings live on the global slot, these keys on
  the queue shard's.

  KEYS[1] queue clock (hash: vtime, base)
  KEYS[2] finish tags (hash: tenant -> last finish tag)
  KEYS[3] the tenant's queued set (zset: task id -> start tag)
  KEYS[4] tenants known to this shard (set)

  ARGV[1] tenant  ARGV[2] "1" fair order, "0" first in first out (priority 0, no tag spent)
  ARGV[3] highest BullMQ priority  ARGV[4] units of virtual time per task of weight 1
  ARGV[5] the tenant's weight  ARGV[6..] task ids, in submit order

  Returns {base, priority 1, tag 1, priority 2, tag 2, ...}, base and tags as decimal text.
]]
local function text(n) return string.format('%d', n) end

local tenant = ARGV[1]
local fair = ARGV[2] == '1'
local limit = tonumber(ARGV[3])
local unit = tonumber(ARGV[4])
local clock = redis.call('HMGET', KEYS[1], 'vtime', 'base')
local vtime = tonumber(clock[1]) or 0
local base = tonumber(clock[2]) or 0
local weight = tonumber(ARGV[5]) or 1
local step = math.ceil(unit / weight)
local finish = tonumber(redis.call('HGET', KEYS[2], tenant))
if finish == nil or finish < vtime or redis.call('ZCARD', KEYS[3]) == 0 then finish = vtime end

local out = {text(base)}
for i = 6, #ARGV do
  local start = finish
  local priority = 0
  if fair then
    finish = start + step
    priority = math.floor((start - base) / unit) + 1
    if priority < 1 then priority = 1 elseif priority > limit then priority = limit end
  end
  redis.call('ZADD', KEYS[3], text(start), ARGV[i])
  out[#out + 1] = priority
  out[#out + 1] = text(start)
end
if fair then redis.call('HSET', KEYS[2], tenant, text(finish)) end
redis.call('SADD', KEYS[4], tenant)
return out
