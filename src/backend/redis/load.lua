-- Load a conversation's snapshot, refresh its sliding TTL, and look up a
-- dedupe record: one round trip. (load_lib.lua is prepended.)
-- KEYS[1] snapshot hash {t}:s (fields v = version, d = JSON; no d = cleared)
-- KEYS[2] dedupe record {t}:d:<id>
-- ARGV[1] ttl in ms  ARGV[2] '1' to look up the dedupe record
-- Returns {version, data or nil, recorded response or nil}
return load_record(KEYS[1], KEYS[2], ARGV[1], ARGV[2] == '1')
