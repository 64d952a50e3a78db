-- Keep a held turn alive while the bot works.
-- KEYS[1] lease  KEYS[2] queue
-- ARGV[1] token  ARGV[2] lease ms  ARGV[3] queue ttl ms
-- Returns 1 while we hold the lease, 0 once it was taken over.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
