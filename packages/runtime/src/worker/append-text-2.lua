-- Fenced append of text pieces to a task's stream: only while the attempt still owns the job's
-- lock, so an attempt that lost it (its model call may still be answering) adds nothing. The
-- stream is capped (MAXLEN ~) and expires after its last write; the write is announced on the
-- channel named like the stream (a wake-up for readers; the stream is the truth).
-- KEYS[1] job lock  KEYS[2] task stream
-- ARGV[1] lock token  ARGV[2] max length  ARGV[3] TTL (ms)  then per piece: step, offset, text
-- Returns 1 when written, 0 when the lock is not the attempt's.
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
local id
for i = 4, #ARGV, 3 do
  id = redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[2], "*", "type", "delta", "step", ARGV[i], "offset", ARGV[i + 1], "text", ARGV[i + 2])
end
if id then
  redis.call("PEXPIRE", KEYS[2], ARGV[3])
  redis.call("PUBLISH", KEYS[2], id)
end
return 1
