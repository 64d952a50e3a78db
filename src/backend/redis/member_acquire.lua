-- On a Redis Cluster, a linked channel's request takes its member's turn
-- here, in the member's slot (acquire.lua pointed it here from the
-- channel's alias): the member's link hash {m}:k must still name the
-- channel with the link id the alias carried, else the alias is stale (an
-- unlink, or a member that expired) and nothing is queued. Otherwise as
-- acquire.lua for the member's own turn (take_turn.lua and read_record.lua
-- written in: hot path, no function).
-- KEYS[1] lease {m}:l  KEYS[2] queue {m}:q  KEYS[3] snapshot {m}:s
-- KEYS[4] dedupe record {m}:d:<id>  KEYS[5] link hash {m}:k
-- ARGV[1] token  ARGV[2] '1' look up the dedupe record
-- ARGV[3] the channel's tag  ARGV[4] the link id
-- Returns {3} stale, {0} queued, or {1, version, data, recorded, false,
-- linked, channels} when the turn is ours now.
if redis.call('HGET', KEYS[5], ARGV[3]) ~= ARGV[4] then
  return {3}
end
local lease, queue, snapshot, dedupe, ttl = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ${TTL_MS}
${TAKE_TURN}
if not granted then
  return {0}
end
-- A member's expiry is noticed on its own key, not through a channel.
local mark, stream, lookup = false, false, ARGV[2] == '1'
${READ_RECORD}
return {1, fields[1] or '0', fields[2], recorded, false, fields[3], channels}
