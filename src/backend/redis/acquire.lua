-- Take a conversation's turn if it is free, else join its queue. When the
-- turn is ours at once, also load the conversation (record, TTL slide,
-- dedupe lookup), saving a round trip.
-- Hot path, so written out in full: no local functions (each costs Redis a
-- closure per run); the hand-over repeats turn_lib.lua's grant_next and
-- the load repeats load.lua. The deployment's constants (lease, TTLs,
-- channel) are written in when the script is built (scripts.rs).
-- KEYS[1] lease {t}:l (value: the holder's token)
-- KEYS[2] queue {t}:q (waiting tokens in arrival order)
-- KEYS[3] snapshot {t}:s   KEYS[4] dedupe record {t}:d:<id>
-- ARGV[1] token  ARGV[2] '1' look up the dedupe record
-- Returns {1, version, data, recorded} when the turn is ours now, {0} when we wait.
local granted = false
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- Nobody waits: the turn is ours if nobody holds it.
  granted = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ${LEASE_MS}) ~= false
end
if not granted then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ${QUEUE_TTL_MS})
  if redis.call('EXISTS', KEYS[1]) == 0 then
    -- Waiters, and a lease that expired (its holder died): the first
    -- waiter is next, which may be us.
    local head = redis.call('LPOP', KEYS[2])
    if head then
      redis.call('SET', KEYS[1], head, 'PX', ${LEASE_MS})
      redis.call('PUBLISH', ${CHANNEL}, head)
    end
    granted = head == ARGV[1]
  end
end
if not granted then
  return {0}
end
local fields = redis.call('HMGET', KEYS[3], 'v', 'd')
if fields[1] then
  redis.call('PEXPIRE', KEYS[3], ${TTL_MS})
end
local recorded = false
if ARGV[2] == '1' then
  recorded = redis.call('GET', KEYS[4])
end
return {1, fields[1] or '0', fields[2], recorded}
