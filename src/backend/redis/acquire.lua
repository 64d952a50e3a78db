-- Take a conversation's turn if it is free, else join its queue. When the
-- turn is ours at once, also load the conversation (record, TTL slide,
-- dedupe lookup), saving a round trip.
-- Hot path, so written out in full: no local functions (each costs Redis a
-- closure per run); the hand-over repeats turn_lib.lua's grant_next, and
-- the load is read_record.lua, written in when the script is built. The deployment's constants (lease, TTLs,
-- channel) are written in when the script is built (scripts.rs).
-- A linked channel (its alias {t}:a holds 'member TTL ms, member tag'; see
-- backend/link.rs) takes its member's turn and reads the member's record
-- and dedupe records instead: resolved here, atomically with the turn.
-- Those keys are the member's, named from the alias, so links exist only
-- where every key is reachable from one script (not on a Cluster, where
-- no alias is ever written).
-- KEYS[1] lease {t}:l (value: the holder's token)
-- KEYS[2] queue {t}:q (waiting tokens in arrival order)
-- KEYS[3] snapshot {t}:s   KEYS[4] dedupe record {t}:d:<id>
-- KEYS[5] alias {t}:a
-- KEYS[6] expiry mark {t}:x, KEYS[7] the audit stream (with the trail on)
-- ARGV[1] token  ARGV[2] '1' look up the dedupe record
-- Returns {1, version, data, recorded, member tag, linked} when the turn is
-- ours now, {0, member tag} when we wait (member tag: false unless linked).
local lease, queue, snapshot, dedupe, ttl = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ${TTL_MS}
local member = redis.call('GET', KEYS[5])
if member then
  local space = string.find(member, ' ', 1, true)
  ttl = string.sub(member, 1, space - 1)
  member = string.sub(member, space + 1)
  lease, queue, snapshot = member .. ':l', member .. ':q', member .. ':s'
  -- The dedupe id as KEYS[4] escapes it, after its `{t}:d:`.
  dedupe = member .. ':d:' .. string.sub(KEYS[4], #KEYS[1] + 2)
end
local granted = false
if redis.call('EXISTS', queue) == 0 then
  -- Nobody waits: the turn is ours if nobody holds it.
  granted = redis.call('SET', lease, ARGV[1], 'NX', 'PX', ${LEASE_MS}) ~= false
end
if not granted then
  redis.call('RPUSH', queue, ARGV[1])
  redis.call('PEXPIRE', queue, ${QUEUE_TTL_MS})
  if redis.call('EXISTS', lease) == 0 then
    -- Waiters, and a lease that expired (its holder died): the first
    -- waiter is next, which may be us.
    local head = redis.call('LPOP', queue)
    if head then
      redis.call('SET', lease, head, 'PX', ${LEASE_MS})
      redis.call('PUBLISH', ${CHANNEL} .. ':' .. string.sub(head, -4), head)
    end
    granted = head == ARGV[1]
  end
end
if not granted then
  return {0, member}
end
-- A member's expiry is noticed on its own key, not through a channel.
local mark, stream, lookup = not member and KEYS[6], KEYS[7], ARGV[2] == '1'
${READ_RECORD}
return {1, fields[1] or '0', fields[2], recorded, member, fields[3]}
