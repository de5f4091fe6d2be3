--[[
  Reserves an amount on every given scope, or on none.

  KEYS[1] reservation hash      KEYS[2] done marker
  KEYS[3] leases (zset)         KEYS[4] known scopes (set), "<prefix>:budget:scopes"
  Each scope's keys are built here from KEYS[4]'s "<prefix>:budget:", as budgetKeys builds them
  (a client sending them would send some 1.4 KB a call): its limit hash "limit:<scope>" and its
  usage hash "usage:<scope>:<period>" for the period its limit counts (none, UTC day or month).
  They share KEYS[4]'s hash tag, so on Redis Cluster they are on the script's slot.

  ARGV[1] id  ARGV[2] taskId  ARGV[3] tokens  ARGV[4] costMicroUsd
  ARGV[5] now (ms)  ARGV[6] leaseMs  ARGV[7] day label  ARGV[8] month label
  ARGV[9] day usage TTL (s)  ARGV[10] month usage TTL (s)  ARGV[11..] scope names

  Returns one of:
    {"ok", leaseExpiresAt, periodLabels}
    {"existing", taskId, tokens, cost, leaseExpiresAt, scopes}  -- the id is already reserved
    {"done", state}                                             -- the id was already closed
    {"exceeded"|"contended", scopeIndex, dimension, periodLabel, periodKind,
     usedTokens, usedCost, resTokens, resCost, maxTokens|-1, maxCost|-1}
]]
local function int(n) return string.format('%d', n) end

if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = redis.call('HMGET', KEYS[1], 'taskId', 'tokens', 'cost', 'leaseExpiresAt', 'scopes')
  return {'existing', r[1], tonumber(r[2]), tonumber(r[3]), tonumber(r[4]), r[5]}
end
local doneState = redis.call('HGET', KEYS[2], 'state')
if doneState then return {'done', doneState} end

local base = string.sub(KEYS[4], 1, -7)
local reqT = tonumber(ARGV[3])
local reqC = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local n = #ARGV - 10
local chosen = {}
local contended = nil

for i = 1, n do
  local scope = ARGV[10 + i]
  local lim = redis.call('HMGET', base .. 'limit:' .. scope, 'maxTokens', 'maxCost', 'period')
  local kind = lim[3] or 'none'
  local label, ttl
  if kind == 'day' then
    label, ttl = ARGV[7], tonumber(ARGV[9])
  elseif kind == 'month' then
    label, ttl = ARGV[8], tonumber(ARGV[10])
  else
    kind = 'none'
    label, ttl = 'none', nil
  end
  local key = base .. 'usage:' .. scope .. ':' .. label
  local u = redis.call('HMGET', key, 'usedTokens', 'usedCost', 'resTokens', 'resCost', 'k')
  local usedT, usedC = tonumber(u[1]) or 0, tonumber(u[2]) or 0
  local resT, resC = tonumber(u[3]) or 0, tonumber(u[4]) or 0
  local maxT, maxC = tonumber(lim[1]), tonumber(lim[2])
  local function refusal(reason, dim)
    return {reason, i, dim, label, kind, usedT, usedC, resT, resC, maxT or -1, maxC or -1}
  end
  -- "exceeded" beats "contended": waiting cannot help an amount that would not fit anyway.
  if maxT and usedT + reqT > maxT then return refusal('exceeded', 'tokens') end
  if maxC and usedC + reqC > maxC then return refusal('exceeded', 'costMicroUsd') end
  if not contended then
    if maxT and usedT + resT + reqT > maxT then
      contended = refusal('contended', 'tokens')
    elseif maxC and usedC + resC + reqC > maxC then
      contended = refusal('contended', 'costMicroUsd')
    end
  end
  -- A session scope (tenant:<t>:session:<s>; tenant ids have no ':') without a limit is accounting
  -- only: its usage expires 30 days after the session was last charged and it is not listed, so
  -- per-session keys do not pile up forever.
  local transient = (not maxT) and (not maxC) and kind == 'none' and string.find(scope, '^tenant:[^:]+:session:') ~= nil
  chosen[i] = {key, label, ttl, transient, resT, resC, u[5]}
end
if contended then return contended end

local labels = {}
for i = 1, n do
  local c = chosen[i]
  -- Both reserved figures in one write: this call read them above and nothing runs in between.
  -- Field k = "p" says the hash's period expiry is set (or it has none) and its scope listed;
  -- an accounting-only hash (expiring) has no k.
  if c[4] then
    redis.call('HSET', c[1], 'resTokens', int(c[5] + reqT), 'resCost', int(c[6] + reqC))
    if c[7] then redis.call('HDEL', c[1], 'k') end
    redis.call('EXPIRE', c[1], 2592000)
  else
    redis.call('HSET', c[1], 'resTokens', int(c[5] + reqT), 'resCost', int(c[6] + reqC), 'k', 'p')
  end
  if not c[4] and c[7] ~= 'p' then
    -- The first reserve on it (or the first since it was accounting only).
    if c[3] and redis.call('TTL', c[1]) < 0 then redis.call('EXPIRE', c[1], c[3]) end
    if not c[3] then redis.call('PERSIST', c[1]) end
    redis.call('SADD', KEYS[4], ARGV[10 + i])
  end
  labels[i] = c[2]
end

local expiresAt = now + tonumber(ARGV[6])
local scopeList = {}
for i = 1, n do scopeList[i] = ARGV[10 + i] end
local labelText = table.concat(labels, '\n')
redis.call('HSET', KEYS[1],
  'taskId', ARGV[2], 'tokens', ARGV[3], 'cost', ARGV[4],
  'leaseExpiresAt', int(expiresAt), 'createdAt', ARGV[5],
  'scopes', table.concat(scopeList, '\n'), 'periods', labelText)
redis.call('ZADD', KEYS[3], int(expiresAt), ARGV[1])
return {'ok', expiresAt, labelText}
