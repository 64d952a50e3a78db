-- Leave the queue: after a turn (release) or when giving up (cancel). A
-- holder hands the lease straight to the next in line and tells it.
-- (turn_lib.lua is prepended.)
-- KEYS[1] lease  KEYS[2] queue
-- ARGV[1] token
-- Returns 1 when we held the turn, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  grant_next(KEYS[1], KEYS[2])
  return 1
end
redis.call('LREM', KEYS[2], 0, ARGV[1])
return 0
