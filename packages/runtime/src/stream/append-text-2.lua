-- Fenced append of text pieces to a task's stream: only while the attempt still owns the job's
-- lock, so an attempt that lost it (its model call may still be answering) adds nothing. The
-- stream is capped (MAXLEN ~) and expires after its last write. The write is announced on the
-- channel named like the stream, with the id it follows and the entries it added, so a reader
-- whose position is that id can take them from the message without reading the stream; any
-- other reader reads the stream (the stream is the truth, the message a wake-up and a shortcut).
-- KEYS[1] job lock  KEYS[2] task stream
-- ARGV[1] lock token  ARGV[2] max length  ARGV[3] TTL (ms)  then per piece: step, offset, text
-- Returns 1 when written, 0 when the lock is not the attempt's.
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV < 6 then return 1 end
local last = redis.call("XREVRANGE", KEYS[2], "+", "-", "COUNT", 1)
local prev = "0-0"
if last[1] then prev = last[1][1] end
local entries = {}
for i = 4, #ARGV, 3 do
  local id = redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[2], "*", "type", "delta", "step", ARGV[i], "offset", ARGV[i + 1], "text", ARGV[i + 2])
  entries[#entries + 1] = { id, "delta", ARGV[i], ARGV[i + 1], ARGV[i + 2] }
end
redis.call("PEXPIRE", KEYS[2], ARGV[3])
redis.call("PUBLISH", KEYS[2], cjson.encode({ prev = prev, entries = entries }))
return 1
