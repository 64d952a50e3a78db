-- Load a conversation's snapshot, refresh its sliding TTL, and look up a
-- dedupe record: one round trip (the same read acquire.lua does when it
-- grants the turn at once).
-- After a wait for a turn, the alias of the key asked for is checked too:
-- links change only under the member's turn, so if it no longer names the
-- member the turn was queued for (or now names one), the request must
-- begin again ('moved').
-- KEYS[1] snapshot hash {t}:s (fields v = version, d = JSON; no d =
--         cleared; k = channels are linked to it)
-- KEYS[2] dedupe record {t}:d:<id>
-- KEYS[3] (after a wait) the alias {t}:a of the key the request names
-- KEYS[4] expiry mark {t}:x, KEYS[5] the audit stream (after a wait, with
--         the trail on: an expiry is noticed as in acquire.lua)
-- ARGV[1] '1' to look up the dedupe record
-- ARGV[2] (with KEYS[3]) the member tag the turn was queued for ('' : none)
-- On a Cluster, a channel's request queued for its member checks the
-- member's side instead (the alias is in another slot): KEYS[3] the
-- member's link hash {m}:k, ARGV[2] the channel's tag, ARGV[3] the link id
-- the alias carried; the hash must still name it.
-- Returns {version, data or nil, recorded response or nil, false, linked,
-- channels} (as acquire.lua), or {'moved'}
if ARGV[3] then
  if redis.call('HGET', KEYS[3], ARGV[2]) ~= ARGV[3] then
    return {'moved'}
  end
elseif KEYS[3] then
  local member = redis.call('GET', KEYS[3])
  if member then
    member = string.sub(member, string.find(member, ' ', 1, true) + 1)
  end
  if (member or '') ~= ARGV[2] then
    return {'moved'}
  end
end
local snapshot, dedupe, ttl, lookup = KEYS[1], KEYS[2], ${TTL_MS}, ARGV[1] == '1'
local mark, stream = KEYS[4], KEYS[5]
${READ_RECORD}
return {fields[1] or '0', fields[2], recorded, false, fields[3], channels}
