--[[
  Closes a reservation exactly once: settle (charge the actual amount), release (charge
  nothing) or reap (charge the reserved amount, only once its lease has run out).
  A settle that arrives after a reap (the worker was cut off from Redis past the lease, but the
  provider did bill the call) corrects the reaped charge to the actual amount, once: the ledger
  keeps equalling what the provider billed.

  KEYS[1] reservation hash  KEYS[2] done marker  KEYS[3] leases (zset), "<prefix>:budget:leases"
  Each scope's usage hash, "usage:<scope>:<period>" under KEYS[3]'s "<prefix>:budget:", is built
  here from the scopes and periods the reservation stored (as reserve-budget.lua built it).

  ARGV[1] id  ARGV[2] mode: settle | release | reap
  ARGV[3] actual tokens  ARGV[4] actual cost (settle only)
  ARGV[5] now (ms)  ARGV[6] retention of a settled or released marker (ms): only the closer's
  own retries need it  ARGV[7] retention of a reaped marker (ms): a late settle corrects it

  Returns one of:
    {"ok", chargedTokens, chargedCost, reservedTokens, reservedCost, taskId, scopes, periods, leaseExpiresAt}
    {"corrected", actualTokens, actualCost, reapedTokens, reapedCost}  -- a settle after a reap
    {"done", state, chargedTokens, chargedCost}   -- closed before; nothing changed
    {"missing"}                                   -- no such reservation
    {"notexpired"}                                -- reap of a reservation whose lease still runs
]]
local function int(n) return string.format('%d', n) end
local mode = ARGV[2]

-- The usage hash of each stored scope, in its stored period.
local base = string.sub(KEYS[3], 1, -7)
local function usageKeys(scopes, periodsText)
  local periods = {}
  for p in string.gmatch(periodsText or '', '[^\n]+') do periods[#periods + 1] = p end
  local keys = {}
  for scope in string.gmatch(scopes, '[^\n]+') do
    keys[#keys + 1] = base .. 'usage:' .. scope .. ':' .. (periods[#keys + 1] or 'none')
  end
  return keys
end

local d = redis.call('HMGET', KEYS[2], 'state', 'tokens', 'cost', 'scopes', 'periods', 'taskId')
if d[1] == 'reaped' and mode == 'settle' and d[4] then
  local dT, dC = tonumber(ARGV[3]) - tonumber(d[2]), tonumber(ARGV[4]) - tonumber(d[3])
  for _, k in ipairs(usageKeys(d[4], d[5])) do
    if dT ~= 0 then redis.call('HINCRBY', k, 'usedTokens', int(dT)) end
    if dC ~= 0 then redis.call('HINCRBY', k, 'usedCost', int(dC)) end
  end
  redis.call('HSET', KEYS[2], 'state', 'settled', 'tokens', ARGV[3], 'cost', ARGV[4], 'at', ARGV[5])
  return {'corrected', tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(d[2]), tonumber(d[3])}
end
if d[1] then return {'done', d[1], tonumber(d[2]), tonumber(d[3])} end

local r = redis.call('HMGET', KEYS[1], 'tokens', 'cost', 'taskId', 'scopes', 'periods', 'leaseExpiresAt')
if not r[1] then
  if mode == 'reap' then redis.call('ZREM', KEYS[3], ARGV[1]) end
  return {'missing'}
end
local resT, resC = tonumber(r[1]), tonumber(r[2])
local lease = tonumber(r[6])
local now = tonumber(ARGV[5])
if mode == 'reap' and lease > now then return {'notexpired'} end

local chT, chC = 0, 0
if mode == 'settle' then
  chT, chC = tonumber(ARGV[3]), tonumber(ARGV[4])
elseif mode == 'reap' then
  chT, chC = resT, resC
end

-- Each usage hash read and written once (a read and a write where four increments would be four
-- commands): nothing runs in between.
for _, k in ipairs(usageKeys(r[4], r[5])) do
  local u = redis.call('HMGET', k, 'resTokens', 'resCost', 'usedTokens', 'usedCost')
  redis.call('HSET', k,
    'resTokens', int((tonumber(u[1]) or 0) - resT), 'resCost', int((tonumber(u[2]) or 0) - resC),
    'usedTokens', int((tonumber(u[3]) or 0) + chT), 'usedCost', int((tonumber(u[4]) or 0) + chC))
end

local state = mode == 'release' and 'released' or (mode == 'reap' and 'reaped' or 'settled')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], 'state', state, 'tokens', int(chT), 'cost', int(chC), 'at', ARGV[5])
-- A reaped reservation remembers its scopes, so a late settle can correct the charge.
if state == 'reaped' then redis.call('HSET', KEYS[2], 'scopes', r[4], 'periods', r[5], 'taskId', r[3]) end
redis.call('PEXPIRE', KEYS[2], state == 'reaped' and ARGV[7] or ARGV[6])
return {'ok', chT, chC, resT, resC, r[3], r[4], r[5], lease}
