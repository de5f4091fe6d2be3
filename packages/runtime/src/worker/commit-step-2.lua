-- One step of a task attempt in one fenced call: an entry appended to the task's step log,
-- progress (job hash, BullMQ `progress` event, the task's stream and its channel), and the job's
-- data when it changed. Written only while the
-- attempt still owns the job's lock; with audit entries riding in the same MULTI/EXEC, only
-- when the audit chain's head is the batch's last hash (the entries were appended just before).
-- KEYS[1] job hash "<prefix>:<queue>:<jobId>"  KEYS[2] audit head (read only when ARGV[9] is set)
-- The job's other keys are built from KEYS[1] as BullMQ and jobKeys build them (its `:lock`, the
-- task's `:stream` and `:steps`, the queue's `events` and `meta`), in KEYS[1]'s hash slot, so a
-- call does not send six keys.
-- ARGV[1] lock token  ARGV[2] job id  ARGV[3] step entry ("" = none)  ARGV[4] "1": the entry
-- replaces the log  ARGV[5] progress JSON ("" = none)  ARGV[6] job data JSON ("" = unchanged)
-- ARGV[7] step log TTL (ms; "" = leave it)  ARGV[8] task stream max length
-- ARGV[9] expected audit head hash ("" = no audit entries)  ARGV[10] task stream TTL (ms)
-- Returns 1 when written, 0 when the lock is not the attempt's, -1 when the job is gone,
-- 2 when the audit entries were not appended (nothing written).
local job = KEYS[1]
local queue = string.sub(job, 1, #job - #ARGV[2])
local lockKey, eventsKey, metaKey = job .. ":lock", queue .. "events", queue .. "meta"
local streamKey, stepsKey = job .. ":stream", job .. ":steps"
if redis.call("GET", lockKey) ~= ARGV[1] then return 0 end
if redis.call("EXISTS", job) == 0 then return -1 end
if ARGV[9] ~= "" and redis.call("HGET", KEYS[2], "hash") ~= ARGV[9] then return 2 end
if ARGV[6] ~= "" then redis.call("HSET", job, "data", ARGV[6]) end
if ARGV[3] ~= "" then
  if ARGV[4] == "1" then redis.call("DEL", stepsKey) end
  redis.call("RPUSH", stepsKey, ARGV[3])
end
if ARGV[7] ~= "" then redis.call("PEXPIRE", stepsKey, ARGV[7]) end
if ARGV[5] ~= "" then
  redis.call("HSET", job, "progress", ARGV[5])
  local maxEvents = redis.call("HGET", metaKey, "opts.maxLenEvents") or 10000
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "progress", "jobId", ARGV[2], "data", ARGV[5])
  local last = redis.call("XREVRANGE", streamKey, "+", "-", "COUNT", 1)
  local prev = "0-0"
  if last[1] then prev = last[1][1] end
  local id = redis.call("XADD", streamKey, "MAXLEN", "~", ARGV[8], "*", "type", "progress", "data", ARGV[5])
  redis.call("PEXPIRE", streamKey, ARGV[10])
  redis.call("PUBLISH", streamKey, cjson.encode({ prev = prev, entries = { { id, "progress", ARGV[5] } } }))
end
return 1
