-- Taking a turn, shared by acquire.lua and member_acquire.lua: written into
-- both where they say TAKE_TURN when the scripts are built (scripts.rs), so
-- neither pays for a function. The host defines `lease` and `queue`; the
-- token is ARGV[1]. Sets `granted`: the turn is ours now (else the token
-- waits in the queue). The hand-over repeats turn_lib.lua's grant_next.
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
