-- Load a conversation's snapshot, refresh its sliding TTL, and look up a
-- dedupe record: one round trip (the same read acquire.lua does when it
-- grants the turn at once).
-- KEYS[1] snapshot hash {t}:s (fields v = version, d = JSON; no d = cleared)
-- KEYS[2] dedupe record {t}:d:<id>
-- ARGV[1] '1' to look up the dedupe record
-- Returns {version, data or nil, recorded response or nil}
local fields = redis.call('HMGET', KEYS[1], 'v', 'd')
if fields[1] then
  redis.call('PEXPIRE', KEYS[1], ${TTL_MS})
end
local recorded = false
if ARGV[1] == '1' then
  recorded = redis.call('GET', KEYS[2])
end
return {fields[1] or '0', fields[2], recorded}
