-- One step of a task attempt in one fenced call: an entry appended to the task's step log,
-- progress (job hash, BullMQ `progress` event, the task's stream and its channel), and the job's
-- data when it changed. Written only while the
-- attempt still owns the job's lock; with audit entries riding in the same MULTI/EXEC, only
-- when the audit chain's head is the batch's last hash (the entries were appended just before).
-- KEYS[1] job hash  KEYS[2] job lock  KEYS[3] events stream  KEYS[4] queue meta  KEYS[5] task stream
-- KEYS[6] step log  KEYS[7] audit head (read only when ARGV[9] is set)
-- ARGV[1] lock token  ARGV[2] job id  ARGV[3] step entry ("" = none)  ARGV[4] "1": the entry
-- replaces the log  ARGV[5] progress JSON ("" = none)  ARGV[6] job data JSON ("" = unchanged)
-- ARGV[7] step log TTL (ms; "" = leave it)  ARGV[8] task stream max length
-- ARGV[9] expected audit head hash ("" = no audit entries)  ARGV[10] task stream TTL (ms)
-- Returns 1 when written, 0 when the lock is not the attempt's, -1 when the job is gone,
-- 2 when the audit entries were not appended (nothing written).
if redis.call("GET", KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
if ARGV[9] ~= "" and redis.call("HGET", KEYS[7], "hash") ~= ARGV[9] then return 2 end
if ARGV[6] ~= "" then redis.call("HSET", KEYS[1], "data", ARGV[6]) end
if ARGV[3] ~= "" then
  if ARGV[4] == "1" then redis.call("DEL", KEYS[6]) end
  redis.call("RPUSH", KEYS[6], ARGV[3])
end
if ARGV[7] ~= "" then redis.call("PEXPIRE", KEYS[6], ARGV[7]) end
if ARGV[5] ~= "" then
  redis.call("HSET", KEYS[1], "progress", ARGV[5])
  local maxEvents = redis.call("HGET", KEYS[4], "opts.maxLenEvents") or 10000
  redis.call("XADD", KEYS[3], "MAXLEN", "~", maxEvents, "*", "event", "progress", "jobId", ARGV[2], "data", ARGV[5])
  local last = redis.call("XREVRANGE", KEYS[5], "+", "-", "COUNT", 1)
  local prev = "0-0"
  if last[1] then prev = last[1][1] end
  local id = redis.call("XADD", KEYS[5], "MAXLEN", "~", ARGV[8], "*", "type", "progress", "data", ARGV[5])
  redis.call("PEXPIRE", KEYS[5], ARGV[10])
  redis.call("PUBLISH", KEYS[5], cjson.encode({ prev = prev, entries = { { id, "progress", ARGV[5] } } }))
end
return 1
