-- Take a conversation's turn if it is free, else join its queue. When the
-- turn is ours at once and ARGV[6] == '1', also load the conversation,
-- saving a round trip. (load_lib.lua and turn_lib.lua are prepended.)
-- KEYS[1] lease {t}:l (value: the holder's token)
-- KEYS[2] queue {t}:q (waiting tokens in arrival order)
-- KEYS[3] snapshot {t}:s   KEYS[4] dedupe record {t}:d:<id>
-- ARGV[1] token  ARGV[2] lease ms  ARGV[3] queue ttl ms  ARGV[4] hand-over channel
-- ARGV[5] snapshot ttl ms  ARGV[6] '1' load when granted  ARGV[7] '1' look up the dedupe record
-- Returns {1, version, data, recorded} (or {1}) when the turn is ours now, {0} when we wait.
local granted = false
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- Nobody waits: the turn is ours if nobody holds it.
  granted = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) ~= false
end
if not granted then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  if redis.call('EXISTS', KEYS[1]) == 0 then
    -- Waiters, and a lease that expired (its holder died): the first
    -- waiter is next, which may be us.
    granted = grant_next(KEYS[1], KEYS[2], ARGV[2], ARGV[4]) == ARGV[1]
  end
end
if not granted then
  return {0}
end
if ARGV[6] ~= '1' then
  return {1}
end
local r = load_record(KEYS[3], KEYS[4], ARGV[5], ARGV[7] == '1')
return {1, r[1], r[2], r[3]}
