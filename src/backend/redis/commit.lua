-- The end-of-turn write, atomic: fence check, version check, snapshot write,
-- TTL, dedupe record, and the turn's release with hand-over to the next in
-- line (also when the write is refused: the turn is over either way). A key is never written without its TTL. (turn_lib.lua
-- is prepended.)
-- KEYS[1] snapshot hash {t}:s
-- KEYS[2] lease {t}:l
-- KEYS[3] dedupe record {t}:d:<id>
-- KEYS[4] turn queue {t}:q
-- ARGV[1] the turn's fencing token
-- ARGV[2] expected version ('' : any)
-- ARGV[3] change: 'p' put, 'c' clear, 'k' keep
-- ARGV[4] snapshot JSON (put)
-- ARGV[5] ttl in ms
-- ARGV[6] '1' to write the dedupe record
-- ARGV[7] recorded response
-- ARGV[8] dedupe window in ms
-- ARGV[9] lease ms  ARGV[10] hand-over channel
-- Returns {'ok', version} | {'conflict', version} | {'fenced', version}
local function write()
  local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then
    return {'fenced', current}
  end
  if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then
    return {'conflict', current}
  end
  local version = current
  if ARGV[3] == 'p' then
    version = current + 1
    redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[4])
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  elseif current > 0 then
    if ARGV[3] == 'c' then
      version = current + 1
      redis.call('HSET', KEYS[1], 'v', version)
      redis.call('HDEL', KEYS[1], 'd')
    end
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  end
  if ARGV[6] == '1' then
    redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[8], 'NX')
  end
  return {'ok', version}
end

local result = write()
-- Fenced off: someone else holds the lease now, and we are in no queue.
if result[1] ~= 'fenced' then
  leave(KEYS[2], KEYS[4], ARGV[1], ARGV[9], ARGV[10], true)
end
return result
