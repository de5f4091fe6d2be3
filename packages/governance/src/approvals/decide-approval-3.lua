-- Records one approver's decision atomically.
-- Rules: only a pending, unexpired approval; only a listed approver ("*" lists everyone);
-- each approver once; any reject resolves the approval as rejected (a veto); approvals are
-- counted and reaching the quorum resolves it as approved. Being one script, an approve and
-- a reject racing each other resolve to exactly one outcome: whichever runs first.
-- On resolution: status set, moved from the pending set to the resolved (unacknowledged)
-- set, and an event published.
-- KEYS[1] record hash, KEYS[2] pending zset, KEYS[3] resolved zset
-- ARGV[1] id, ARGV[2] approver, ARGV[3] outcome (approve|reject), ARGV[4] decision JSON,
-- ARGV[5] now (ms), ARGV[6] events channel
-- Returns {"unknown"} | {"already-decided", status, byApprover 0|1} | {"expired"} |
--   {"not-approver"} | {"recorded", approvals, quorum} | {"decided", status, approvals}
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {"unknown"}
end
local f = redis.call("HMGET", KEYS[1], "status", "expiresAt", "approvers", "quorum", "decisions", "taskId", "jobId")
local status, expiresAt, quorum = f[1], tonumber(f[2]), tonumber(f[4])
local now = tonumber(ARGV[5])

local function resolve(newStatus)
  redis.call("HSET", KEYS[1], "status", newStatus, "resolvedAt", ARGV[5])
  redis.call("ZREM", KEYS[2], ARGV[1])
  redis.call("ZADD", KEYS[3], now, ARGV[1])
  local event = {approvalId = ARGV[1], taskId = f[6], status = newStatus}
  if f[7] and f[7] ~= "" then event.jobId = f[7] end
  redis.call("PUBLISH", ARGV[6], cjson.encode(event))
end

if status ~= "pending" then
  return {"already-decided", status, 0}
end
if now >= expiresAt then
  resolve("expired")
  return {"expired"}
end

local listed = false
for _, a in ipairs(cjson.decode(f[3])) do
  if a == ARGV[2] or a == "*" then listed = true end
end
if not listed then
  return {"not-approver"}
end

local approvals = 0
for _, d in ipairs(cjson.decode(f[5])) do
  if d.approver == ARGV[2] then
    return {"already-decided", status, 1}
  end
  if d.outcome == "approve" then approvals = approvals + 1 end
end
local decisions = f[5]
if decisions == "[]" then
  decisions = "[" .. ARGV[4] .. "]"
else
  decisions = string.sub(decisions, 1, -2) .. "," .. ARGV[4] .. "]"
end
redis.call("HSET", KEYS[1], "decisions", decisions)

if ARGV[3] == "reject" then
  resolve("rejected")
  return {"decided", "rejected", approvals}
end
approvals = approvals + 1
if approvals >= quorum then
  resolve("approved")
  return {"decided", "approved", approvals}
end
return {"recorded", approvals, quorum}
