-- Adopt a deferred turn by its token, for a late report that reached
-- this replica (defer.lua wrote the deferral record). Good only while the
-- turn is still held under the fence the deferral names: a report after
-- the turn ended (reported, timed out, its holder's lease expired) finds
-- nothing. The deferral record is then marked used (fence 0, which no
-- turn holds): a token is adopted once.
-- KEYS[1] lease {t}:l   KEYS[2] deferral {t}:r   KEYS[3] snapshot {t}:s
-- ARGV[1] the turn token's SHA-256 (hex)   ARGV[2] the asking replica's id
-- Returns {fence, version, data, linked}; {'pending'} while the turn is
-- held and not deferred (yet: the report overtook the answer that defers
-- it), or deferred by the asking replica itself (which hands the turn over
-- in process); {} when there is no such turn.
local deferral = redis.call('GET', KEYS[2])
if not deferral then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {'pending'}
  end
  return {}
end
-- '<fence> <digest> <replica>'
local first = string.find(deferral, ' ', 1, true)
local second = string.find(deferral, ' ', first + 1, true)
local fence = string.sub(deferral, 1, first - 1)
local digest = string.sub(deferral, first + 1, second - 1)
if digest ~= ARGV[1] or redis.call('GET', KEYS[1]) ~= fence then
  return {}
end
if string.sub(deferral, second + 1) == ARGV[2] then
  return {'pending'}
end
redis.call('SET', KEYS[2], '0 ' .. ARGV[1] .. ' -', 'KEEPTTL')
redis.call('PEXPIRE', KEYS[1], ${LEASE_MS})
local fields = redis.call('HMGET', KEYS[3], 'v', 'd', 'k')
return {fence, fields[1] or '0', fields[2], fields[3]}
