-- Shared by the turn scripts and commit.lua (prepended to each).

-- Gives the lease to the queue's head and, unless it is `me`, tells it.
-- Returns the head (nil when the queue is empty).
local function grant_head(lease, queue, lease_ms, channel, me)
  local head = redis.call('LINDEX', queue, 0)
  if head then
    redis.call('SET', lease, head, 'PX', lease_ms)
    if head ~= me then
      redis.call('PUBLISH', channel, head)
    end
  end
  return head
end

-- The lease is free: a head that is not `me` held a lease that expired (its
-- holder crashed or froze), so drop it and grant the next in line.
local function promote(lease, queue, lease_ms, channel, me)
  if redis.call('LINDEX', queue, 0) ~= me then
    redis.call('LPOP', queue)
  end
  return grant_head(lease, queue, lease_ms, channel, me)
end

-- Leaves the queue; a holder hands the lease to the next in line.
-- Returns 1 when `token` held the turn.
local function leave(lease, queue, token, lease_ms, channel)
  redis.call('LREM', queue, 0, token)
  if redis.call('GET', lease) ~= token then
    return 0
  end
  if not grant_head(lease, queue, lease_ms, channel, nil) then
    redis.call('DEL', lease)
  end
  return 1
end
