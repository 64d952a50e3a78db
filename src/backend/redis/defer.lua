-- A deferred turn (the bot answered first and reports later, issue 19):
-- the turn stays held (the lease is not released), the answer's dedupe
-- record answers redeliveries meanwhile, and the deferral record {t}:r
-- lets any replica adopt the turn by its token (adopt.lua).
-- KEYS[1] lease {t}:l   KEYS[2] deferral {t}:r   KEYS[3] dedupe record {t}:d:<id>
-- ARGV[1] the turn's fencing token   ARGV[2] the turn token's SHA-256 (hex)
-- ARGV[3] ms the deferral is good for (route.report_timeout)
-- ARGV[4] '1' to write the dedupe record   ARGV[5] recorded response
-- ARGV[6] this replica's id (its own reports are claimed in process)
-- Returns 1, or 0 when the turn is no longer ours (fenced off).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ${LEASE_MS})
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[6], 'PX', ARGV[3])
if ARGV[4] == '1' then
  redis.call('SET', KEYS[3], ARGV[5], 'PX', ${DEDUPE_MS}, 'NX')
end
return 1
