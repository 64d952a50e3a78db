-- Join a conversation's turn queue; take the lease if it is free.
-- KEYS[1] lease {t}:l (value: the holder's token)
-- KEYS[2] queue {t}:q (tokens in arrival order; the holder is the head)
-- ARGV[1] token  ARGV[2] lease ms  ARGV[3] queue ttl ms  ARGV[4] hand-over channel
-- Returns 1 when the turn is ours now, 0 when we wait.
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
-- The lease is free. A head that is not us held a lease that expired
-- (its holder crashed or froze): drop it and grant the next in line.
local head = redis.call('LINDEX', KEYS[2], 0)
if head ~= ARGV[1] then
  redis.call('LPOP', KEYS[2])
  head = redis.call('LINDEX', KEYS[2], 0)
end
redis.call('SET', KEYS[1], head, 'PX', ARGV[2])
if head == ARGV[1] then
  return 1
end
redis.call('PUBLISH', ARGV[4], head)
return 0
