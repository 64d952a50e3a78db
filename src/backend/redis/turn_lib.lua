-- Shared by check.lua and release.lua (prepended to each; the hot scripts,
-- acquire.lua and commit.lua, write the same steps out).
--
-- The queue {t}:q holds only waiters, in arrival order; the lease {t}:l
-- holds the current holder's token, and the holder is never in the queue.
-- A free lease with an empty queue is taken without queueing (the
-- uncontended case: no queue key at all).

-- Hands the lease to the first waiter and tells it, on the channel of the
-- replica that queued it: a token's last four decimal digits name that
-- replica (`shared.rs`). Returns that token, or nil (and frees the lease)
-- when nobody waits.
local function grant_next(lease, queue)
  local head = redis.call('LPOP', queue)
  if head then
    redis.call('SET', lease, head, 'PX', ${LEASE_MS})
    redis.call('PUBLISH', ${CHANNEL} .. ':' .. string.sub(head, -4), head)
  else
    redis.call('DEL', lease)
  end
  return head
end
