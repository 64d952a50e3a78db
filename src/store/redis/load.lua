-- Load a conversation's snapshot, refresh its sliding TTL, and look up a
-- dedupe record: one round trip.
-- KEYS[1] snapshot hash {t}:s (fields v = version, d = JSON; no d = cleared)
-- KEYS[2] dedupe record {t}:d:<id> (only read when ARGV[2] == '1')
-- ARGV[1] ttl in ms
-- ARGV[2] '1' to look up the dedupe record
-- Returns {version, data or nil, recorded response or nil}
local fields = redis.call('HMGET', KEYS[1], 'v', 'd')
local version = fields[1]
if version then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local recorded = false
if ARGV[2] == '1' then
  recorded = redis.call('GET', KEYS[2])
end
return {version or '0', fields[2], recorded}
