-- Join a conversation's turn queue; take the lease if it is free. When the
-- turn is ours at once and ARGV[6] == '1', also load the conversation,
-- saving a round trip. (load_lib.lua and turn_lib.lua are prepended.)
-- KEYS[1] lease {t}:l (value: the holder's token)
-- KEYS[2] queue {t}:q (tokens in arrival order; the holder is the head)
-- KEYS[3] snapshot {t}:s   KEYS[4] dedupe record {t}:d:<id>
-- ARGV[1] token  ARGV[2] lease ms  ARGV[3] queue ttl ms  ARGV[4] hand-over channel
-- ARGV[5] snapshot ttl ms  ARGV[6] '1' load when granted  ARGV[7] '1' look up the dedupe record
-- Returns {1, version, data, recorded} (or {1}) when the turn is ours now, {0} when we wait.
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
if promote(KEYS[1], KEYS[2], ARGV[2], ARGV[4], ARGV[1]) ~= ARGV[1] then
  return {0}
end
if ARGV[6] ~= '1' then
  return {1}
end
local r = load_record(KEYS[3], KEYS[4], ARGV[5], ARGV[7] == '1')
return {1, r[1], r[2], r[3]}
