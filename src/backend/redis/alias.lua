-- A linked channel's alias on a Redis Cluster, in the channel's slot (the
-- member's side is commit.lua's, in the member's slot).
-- 'set', under the channel's own turn (a link): the channel has no
-- channels of its own and no other alias, then the alias is written first,
-- before the member's commit names the channel (an alias the member does
-- not name is stale and dropped by the next request: acquire.lua).
-- 'drop': the alias goes if it is still exactly the one given (the
-- member's commit refused the link, or unlinked it).
-- KEYS[1] the channel's lease {c}:l  KEYS[2] its alias {c}:a
-- KEYS[3] its link hash {c}:k
-- ARGV[1] 'set' or 'drop'  ARGV[2] the alias ('member TTL ms, member
-- tag, link id')  ARGV[3] ('set') the channel's turn token
-- Returns 'ok', 'refused' (one level only) or 'fenced' (the turn is gone).
if ARGV[1] == 'drop' then
  if redis.call('GET', KEYS[2]) == ARGV[2] then
    redis.call('DEL', KEYS[2])
  end
  return 'ok'
end
if redis.call('GET', KEYS[1]) ~= ARGV[3] then
  return 'fenced'
end
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 'refused'
end
local ttl = string.sub(ARGV[2], 1, string.find(ARGV[2], ' ', 1, true) - 1)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
return 'ok'
