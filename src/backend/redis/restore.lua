-- `statehold import`'s write of one conversation, under its turn: the record
-- as exported, at exactly its version and with its lifetime left, only over
-- an older record (or none), so importing twice changes nothing and an
-- import never undoes a newer write. Releases the turn as commit.lua does.
-- (Never on the request path; turn_lib.lua is prepended.)
-- KEYS[1] snapshot hash {t}:s   KEYS[2] lease {t}:l   KEYS[3] queue {t}:q
-- KEYS[4] the audit stream (with the trail on)
-- ARGV[1] the turn's fencing token   ARGV[2] the version
-- ARGV[3] 'p' a snapshot, 'c' a tombstone   ARGV[4] the snapshot as stored
-- ARGV[5] lifetime left (ms)   ARGV[6] (with the trail on) the audit event's
--         members but the versions
-- Returns {'ok', version} | {'conflict', current} | {'fenced', current};
-- an error, before anything is written, for a version or lifetime that is
-- not a whole number from 1 to 2^53 - 1 (a float version, or a PEXPIRE
-- failing after the HSET, would leave a damaged or immortal record).
local version, ttl = tonumber(ARGV[2]), tonumber(ARGV[5])
for _, n in ipairs({version or 0, ttl or 0}) do
  if n < 1 or n > 9007199254740991 or n % 1 ~= 0 then
    return redis.error_reply('statehold: invalid version or lifetime')
  end
end
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return {'fenced', current}
end
local result
if version <= current then
  result = {'conflict', current}
else
  if ARGV[3] == 'p' then
    redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[4])
  else
    redis.call('HSET', KEYS[1], 'v', ARGV[2])
    redis.call('HDEL', KEYS[1], 'd')
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if ${AUDIT} > 0 and ARGV[6] and ARGV[6] ~= '' then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ${AUDIT}, '*', 'e',
      '{"from_version":' .. current .. ',"to_version":' .. ARGV[2] .. ',' .. ARGV[6] .. '}')
  end
  result = {'ok', version}
end
grant_next(KEYS[2], KEYS[3])
return result
