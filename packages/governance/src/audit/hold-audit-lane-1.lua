-- Takes, renews or releases one audit lane's lease. The lease only spreads writers over lanes:
-- the chain's compare-and-append keeps it correct whoever writes, so losing it is not an error.
-- KEYS[1] the lane's owner key
-- ARGV[1] "take" | "renew" | "release", ARGV[2] owner id, ARGV[3] lease (ms)
-- Returns 1 when the caller holds the lane afterwards (or released its own lease), else 0.
local owner = redis.call("GET", KEYS[1])
if ARGV[1] == "release" then
  if owner == ARGV[2] then
    redis.call("DEL", KEYS[1])
    return 1
  end
  return 0
end
if owner == false or (ARGV[1] == "renew" and owner == ARGV[2]) then
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
  return 1
end
return 0
