-- Join a conversation's turn queue; take the lease if it is free. When the
-- turn is ours at once and ARGV[6] == '1', also load the conversation (as
-- load.lua does), saving a round trip.
-- KEYS[1] lease {t}:l (value: the holder's token)
-- KEYS[2] queue {t}:q (tokens in arrival order; the holder is the head)
-- KEYS[3] snapshot {t}:s   KEYS[4] dedupe record {t}:d:<id>
-- ARGV[1] token  ARGV[2] lease ms  ARGV[3] queue ttl ms  ARGV[4] hand-over channel
-- ARGV[5] snapshot ttl ms  ARGV[6] '1' load when granted  ARGV[7] '1' look up the dedupe record
-- Returns {1, version, data, recorded} when the turn is ours now, {0} when we wait.
local function granted()
  if ARGV[6] ~= '1' then
    return {1}
  end
  local fields = redis.call('HMGET', KEYS[3], 'v', 'd')
  if fields[1] then
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
  end
  local recorded = false
  if ARGV[7] == '1' then
    recorded = redis.call('GET', KEYS[4])
  end
  return {1, fields[1] or '0', fields[2], recorded}
end

redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
-- The lease is free. A head that is not us held a lease that expired
-- (its holder crashed or froze): drop it and grant the next in line.
local head = redis.call('LINDEX', KEYS[2], 0)
if head ~= ARGV[1] then
  redis.call('LPOP', KEYS[2])
  head = redis.call('LINDEX', KEYS[2], 0)
end
redis.call('SET', KEYS[1], head, 'PX', ARGV[2])
if head == ARGV[1] then
  return granted()
end
redis.call('PUBLISH', ARGV[4], head)
return {0}
