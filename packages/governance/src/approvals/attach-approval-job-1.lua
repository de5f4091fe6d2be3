-- Records the job waiting on an approval, only if the approval exists.
-- KEYS[1] record hash; ARGV[1] job id. Returns 1, or 0 when there is no such approval.
if redis.call("EXISTS", KEYS[1]) == 0 then
  return 0
end
redis.call("HSET", KEYS[1], "jobId", ARGV[1])
return 1
