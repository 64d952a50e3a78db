-- Leave the queue: after a turn (release) or when giving up (cancel). A
-- holder hands the lease straight to the next in line and tells it.
-- KEYS[1] lease  KEYS[2] queue
-- ARGV[1] token  ARGV[2] lease ms  ARGV[3] channel
-- Returns 1 when we held the turn, 0 otherwise.
redis.call('LREM', KEYS[2], 0, ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local head = redis.call('LINDEX', KEYS[2], 0)
if head then
  redis.call('SET', KEYS[1], head, 'PX', ARGV[2])
  redis.call('PUBLISH', ARGV[3], head)
else
  redis.call('DEL', KEYS[1])
end
return 1
