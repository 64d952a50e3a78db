-- Shared by the turn scripts and commit.lua (prepended to each).
--
-- The queue {t}:q holds only waiters, in arrival order; the lease {t}:l
-- holds the current holder's token, and the holder is never in the queue.
-- A free lease with an empty queue is taken without queueing (the
-- uncontended case: no queue key at all).

-- Hands the lease to the first waiter and tells it. Returns that token, or
-- nil (and frees the lease) when nobody waits.
local function grant_next(lease, queue, lease_ms, channel)
  local head = redis.call('LPOP', queue)
  if head then
    redis.call('SET', lease, head, 'PX', lease_ms)
    redis.call('PUBLISH', channel, head)
  else
    redis.call('DEL', lease)
  end
  return head
end

-- Ends `token`'s part: a holder hands the turn on, a waiter leaves the queue.
-- `holding`: the caller already checked that `token` holds the lease.
-- Returns 1 when `token` held the turn, 0 otherwise.
local function leave(lease, queue, token, lease_ms, channel, holding)
  if holding or redis.call('GET', lease) == token then
    grant_next(lease, queue, lease_ms, channel)
    return 1
  end
  redis.call('LREM', queue, 0, token)
  return 0
end
