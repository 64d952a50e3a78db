-- Keep a held turn alive while the bot works.
-- KEYS[1] lease  KEYS[2] queue
-- ARGV[1] token
-- Returns 1 while we hold the lease, 0 once it was taken over.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ${LEASE_MS})
  redis.call('PEXPIRE', KEYS[2], ${QUEUE_TTL_MS})
  return 1
end
return 0
