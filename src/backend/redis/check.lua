-- A waiter's periodic check, for when a hand-over notice was missed or the
-- holder died: is the turn ours, or can the expired holder be skipped?
-- (turn_lib.lua is prepended.)
-- KEYS[1] lease  KEYS[2] queue
-- ARGV[1] token
-- Returns 1 when the turn is ours, 0 when we keep waiting.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return 1
end
if not redis.call('LPOS', KEYS[2], ARGV[1]) then
  -- Our place was lost (the queue expired): queue again rather than starve.
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ${QUEUE_TTL_MS})
if holder then
  return 0
end
-- The holder's lease expired: the first waiter is next (it may be us; a
-- waiter that died meanwhile is skipped in turn when its lease expires).
if grant_next(KEYS[1], KEYS[2]) == ARGV[1] then
  return 1
end
return 0
