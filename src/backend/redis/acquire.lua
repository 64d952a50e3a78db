-- Take a conversation's turn if it is free, else join its queue. When the
-- turn is ours at once, also load the conversation (record, TTL slide,
-- dedupe lookup), saving a round trip.
-- Hot path, so written out in full: no local functions (each costs Redis a
-- closure per run); the hand-over repeats turn_lib.lua's grant_next, and
-- the load is read_record.lua and taking the turn take_turn.lua, written in
-- when the script is built. The deployment's constants (lease, TTLs,
-- channel) are written in when the script is built (scripts.rs).
-- A linked channel (its alias {t}:a holds 'member TTL ms, member tag'; see
-- backend/link.rs) takes its member's turn and reads the member's record
-- and dedupe records instead: resolved here, atomically with the turn.
-- Those keys are the member's, named from the alias. On a Cluster they are
-- in another slot: there the alias ('member TTL ms, member tag, link id')
-- only points the way, followed while nobody holds or waits for the
-- channel's own turn (a link change holds it), and the member's slot
-- decides (member_acquire.lua); a pointer the member disowned (ARGV[3],
-- exactly as read) is dropped here and the channel is its own again.
-- KEYS[1] lease {t}:l (value: the holder's token)
-- KEYS[2] queue {t}:q (waiting tokens in arrival order)
-- KEYS[3] snapshot {t}:s   KEYS[4] dedupe record {t}:d:<id>
-- KEYS[5] alias {t}:a
-- KEYS[6] expiry mark {t}:x, KEYS[7] the audit stream (with the trail on)
-- ARGV[1] token  ARGV[2] '1' look up the dedupe record
-- ARGV[3] (a Cluster) the alias the member disowned, '' : none
-- Returns {1, version, data, recorded, member tag, linked, channels} when
-- the turn is ours now, {0, member tag} when we wait (member tag: false
-- unless linked), {2, alias} on a Cluster to go to the member.
local lease, queue, snapshot, dedupe, ttl = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ${TTL_MS}
local member = redis.call('GET', KEYS[5])
if member and ${CLUSTER} == 1 then
  if redis.call('EXISTS', lease) == 0 and redis.call('EXISTS', queue) == 0 then
    if member ~= ARGV[3] then
      -- Used: the pointer lives as long as its member's record.
      redis.call('PEXPIRE', KEYS[5], string.sub(member, 1, string.find(member, ' ', 1, true) - 1))
      return {2, member}
    end
    redis.call('DEL', KEYS[5])
  end
  member = false
end
if member then
  local space = string.find(member, ' ', 1, true)
  ttl = string.sub(member, 1, space - 1)
  member = string.sub(member, space + 1)
  lease, queue, snapshot = member .. ':l', member .. ':q', member .. ':s'
  -- The dedupe id as KEYS[4] escapes it, after its `{t}:d:`.
  dedupe = member .. ':d:' .. string.sub(KEYS[4], #KEYS[1] + 2)
end
${TAKE_TURN}
if not granted then
  return {0, member}
end
-- A member's expiry is noticed on its own key, not through a channel.
local mark, stream, lookup = not member and KEYS[6], KEYS[7], ARGV[2] == '1'
${READ_RECORD}
return {1, fields[1] or '0', fields[2], recorded, member, fields[3], channels}
