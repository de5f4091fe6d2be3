-- Fenced job write: sets one field of the job hash (data or progress) only while the attempt
-- still owns the job's lock, so an attempt whose lock lapsed (and whose job another worker took)
-- cannot overwrite the new attempt's state. A progress write also emits BullMQ's `progress` event
-- and appends the progress to the task's own stream (capped, expiring), announced on its channel
-- with the id it follows and the entry (as append-text.lua announces text).
-- KEYS[1] job hash  KEYS[2] job lock  KEYS[3] events stream  KEYS[4] queue meta  KEYS[5] task stream
-- ARGV[1] lock token  ARGV[2] field (data | progress)  ARGV[3] value (JSON)  ARGV[4] job id
-- ARGV[5] task stream max length  ARGV[6] task stream TTL (ms)
-- Returns 1 when written, 0 when the lock is not the attempt's, -1 when the job is gone.
if redis.call("GET", KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
redis.call("HSET", KEYS[1], ARGV[2], ARGV[3])
if ARGV[2] == "progress" then
  local maxEvents = redis.call("HGET", KEYS[4], "opts.maxLenEvents") or 10000
  redis.call("XADD", KEYS[3], "MAXLEN", "~", maxEvents, "*", "event", "progress", "jobId", ARGV[4], "data", ARGV[3])
  local last = redis.call("XREVRANGE", KEYS[5], "+", "-", "COUNT", 1)
  local prev = "0-0"
  if last[1] then prev = last[1][1] end
  local id = redis.call("XADD", KEYS[5], "MAXLEN", "~", ARGV[5], "*", "type", "progress", "data", ARGV[3])
  redis.call("PEXPIRE", KEYS[5], ARGV[6])
  redis.call("PUBLISH", KEYS[5], cjson.encode({ prev = prev, entries = { { id, "progress", ARGV[3] } } }))
end
return 1
