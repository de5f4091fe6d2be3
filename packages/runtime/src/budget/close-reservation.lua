--[[
  Closes a reservation exactly once: settle (charge the actual amount), release (charge
  nothing) or reap (charge the reserved amount, only once its lease has run out).

  KEYS[1] reservation hash  KEYS[2] done marker  KEYS[3] leases (zset)
  KEYS[4..] usage hash of each scope, in the reservation's order (its stored period)

  ARGV[1] id  ARGV[2] mode: settle | release | reap
  ARGV[3] actual tokens  ARGV[4] actual cost (settle only)
  ARGV[5] now (ms)  ARGV[6] done-marker retention (ms)

  Returns one of:
    {"ok", chargedTokens, chargedCost, reservedTokens, reservedCost, taskId, scopes, periods, leaseExpiresAt}
    {"done", state, chargedTokens, chargedCost}   -- closed before; nothing changed
    {"missing"}                                   -- no such reservation
    {"notexpired"}                                -- reap of a reservation whose lease still runs
    {"mismatch"}                                  -- KEYS are not the stored scopes' usage keys; re-read and retry
]]
local function int(n) return string.format('%d', n) end

local d = redis.call('HMGET', KEYS[2], 'state', 'tokens', 'cost')
if d[1] then return {'done', d[1], tonumber(d[2]), tonumber(d[3])} end

local mode = ARGV[2]
local r = redis.call('HMGET', KEYS[1], 'tokens', 'cost', 'taskId', 'scopes', 'periods', 'leaseExpiresAt')
if not r[1] then
  if mode == 'reap' then redis.call('ZREM', KEYS[3], ARGV[1]) end
  return {'missing'}
end
local resT, resC = tonumber(r[1]), tonumber(r[2])
local lease = tonumber(r[6])
local now = tonumber(ARGV[5])
if mode == 'reap' and lease > now then return {'notexpired'} end

-- Each usage key must be "<prefix>:budget:usage:<scope>:<period>" of the stored scope and period.
local periods = {}
for p in string.gmatch(r[5], '[^\n]+') do periods[#periods + 1] = p end
local count = 0
for scope in string.gmatch(r[4], '[^\n]+') do
  count = count + 1
  local key = KEYS[3 + count]
  local suffix = ':budget:usage:' .. scope .. ':' .. (periods[count] or '')
  if not key or string.sub(key, -#suffix) ~= suffix then return {'mismatch'} end
end
if count ~= #KEYS - 3 then return {'mismatch'} end

local chT, chC = 0, 0
if mode == 'settle' then
  chT, chC = tonumber(ARGV[3]), tonumber(ARGV[4])
elseif mode == 'reap' then
  chT, chC = resT, resC
end

for i = 4, #KEYS do
  local k = KEYS[i]
  if resT ~= 0 then redis.call('HINCRBY', k, 'resTokens', int(-resT)) end
  if resC ~= 0 then redis.call('HINCRBY', k, 'resCost', int(-resC)) end
  if chT ~= 0 then redis.call('HINCRBY', k, 'usedTokens', int(chT)) end
  if chC ~= 0 then redis.call('HINCRBY', k, 'usedCost', int(chC)) end
end

local state = mode == 'release' and 'released' or (mode == 'reap' and 'reaped' or 'settled')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], 'state', state, 'tokens', int(chT), 'cost', int(chC), 'at', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {'ok', chT, chC, resT, resC, r[3], r[4], r[5], lease}
